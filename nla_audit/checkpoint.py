"""Locating and loading NLA checkpoints: local folders, hub ids, and nla_audit's adapter format.

An AV or AR checkpoint is a folder with ``nla_meta.yaml``. Either it holds full HF weights (the released
format), or its sidecar has an ``adapter`` block naming a base model, whose weights are loaded and the
LoRA factors merged in. Both load with the same ``from_pretrained`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nla_audit.errors import ModelLoadError, SidecarError
from nla_audit.sidecar import SIDECAR_NAME, ModelSidecar, read_model_sidecar


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
    if int(getattr(getattr(config, "text_config", config), "hidden_size")) != meta.d_model:
        raise SidecarError(f"{ckpt}: sidecar d_model {meta.d_model} does not match the model's hidden size",
                           fix="the sidecar belongs to another model")
    return model.eval(), tokenizer


def read_sidecar(ckpt: Path, role: str) -> ModelSidecar:
    return read_model_sidecar(ckpt, role=role)
