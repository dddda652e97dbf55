"""Locating and loading NLA checkpoints: local folders, hub ids, and nla_audit's adapter format.

An AV or AR checkpoint is a folder with ``nla_meta.yaml``. Either it holds full HF weights (the released
format), or its sidecar has an ``adapter`` block naming a base model, whose weights are loaded and the
LoRA factors merged in. Both load with the same ``from_pretrained`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nla_audit.errors import ModelLoadError, SidecarError
from nla_audit.sidecar import SIDECAR_NAME, VALUE_HEAD_FILE, ModelSidecar, read_model_sidecar


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local folder as is; otherwise a hub id, downloaded through ``hub.snapshot`` (fails clearly offline)."""
    path = Path(path_or_id).expanduser()
    if path.exists():
        if not (path / SIDECAR_NAME).exists():
            raise SidecarError(f"{path} has no {SIDECAR_NAME}", expected="an NLA checkpoint folder (AV or AR)",
                               fix="pass the av/ or ar/ folder of an NLA checkpoint")
        return path
    from nla_audit.hub import snapshot

    return snapshot(str(path_or_id))


def load_backbone(ckpt: Path, meta: ModelSidecar, dtype: Any, device: str, config_edit=None):
    """Return (model, tokenizer) for a checkpoint; ``config_edit(config)`` may truncate layers first."""
    from transformers import AutoConfig

    from nla_audit.lora import load_adapter
    from nla_audit.models import load_causal_lm, load_tokenizer, resolve_model_path

    if meta.adapter:
        base = resolve_model_path(meta.adapter.get("base") or meta.base_checkpoint)
    else:
        base = str(ckpt)
        if not (ckpt / "config.json").exists():
            raise ModelLoadError(f"{ckpt} has neither model weights (config.json) nor an adapter block in its sidecar",
                                 fix="restore the checkpoint folder")
    config = AutoConfig.from_pretrained(base)
    if config_edit is not None:
        config = config_edit(config)
    tok_src = ckpt if (ckpt / "tokenizer_config.json").exists() else base
    tokenizer = load_tokenizer(str(tok_src))
    model = load_causal_lm(base, dtype, device, config=config)
    if meta.adapter:
        load_adapter(model, ckpt, meta.adapter, merge=True)
    if int(getattr(config, "text_config", config).hidden_size) != meta.d_model:
        raise SidecarError(f"{ckpt}: sidecar d_model {meta.d_model} does not match the model's hidden size",
                           fix="the sidecar belongs to another model")
    return model.eval(), tokenizer


def read_sidecar(ckpt: Path, role: str) -> ModelSidecar:
    return read_model_sidecar(ckpt, role=role)


def export_full(av: Any, ar: Any, out: str | Path) -> tuple[Path, Path]:
    """Write an AV/AR pair in the released full-weight format (no adapters): ``out/av`` is a plain HF causal LM
    + tokenizer + sidecar; ``out/ar`` is the truncated backbone (K+1 blocks, no norm / lm_head weights) +
    ``value_head.safetensors`` + tokenizer + sidecar. Readers of the reference format can load it."""
    from safetensors.torch import save_file

    from nla_audit.atomic import atomic_dir

    out = Path(out)
    with atomic_dir(out / "av") as tmp:
        av.model.save_pretrained(tmp)
        av.tokenizer.save_pretrained(tmp)
        av.meta.with_(adapter=None).save(tmp)
    with atomic_dir(out / "ar") as tmp:
        backbone = ar.backbone
        backbone.config.architectures = [type(av.model).__name__]
        state = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
        backbone.config.save_pretrained(tmp)
        save_file(state, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        save_file({"weight": ar.value_head.weight.detach().float().cpu().contiguous()}, str(Path(tmp) / VALUE_HEAD_FILE))
        ar.tokenizer.save_pretrained(tmp)
        ar.meta.with_(adapter=None).save(tmp)
    return out / "av", out / "ar"
