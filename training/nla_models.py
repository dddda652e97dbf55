"""Trainable AV/AR construction and export to the checkpoint format ``nla_audit`` loads.

Both start from the base instruct model (never the AR from the AV), with LoRA adapters on every
attention/MLP projection; the AR's value head is a full ``Linear(d, d)`` initialised to the identity, so at
step 0 the AR predicts block K's raw output (as the reference code initialises it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nla_audit.ar import VALUE_HEAD_FILE, ActivationReconstructor, strip_head, truncate_config
from nla_audit.atomic import atomic_dir
from nla_audit.lora import add_lora, load_adapter, save_adapter
from nla_audit.models import load_causal_lm, load_tokenizer, resolve_model_path
from nla_audit.sidecar import AR_TEMPLATE, AV_TEMPLATE, ModelSidecar, TokenMeta


def base_name(model: str) -> str:
    from nla_audit import embedded

    return embedded.HUB_ID if model in embedded.ALIASES else model


def build_ar(model: str, layer: int, rank: int, alpha: float, device: str = "cpu",
             init_from: str | None = None, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, nn.Module, nn.Linear, Any]:
    """(causal_lm holding the LoRA keys, inner decoder, value head, tokenizer); optionally resume from an
    exported AR checkpoint (its adapter is loaded unmerged so training continues on it)."""
    from transformers import AutoConfig

    path = resolve_model_path(model)
    config = truncate_config(AutoConfig.from_pretrained(path), layer)
    lm = load_causal_lm(path, dtype, device, config=config)
    tok = load_tokenizer(path)
    tok.padding_side = "right"
    head = nn.Linear(lm.config.hidden_size, lm.config.hidden_size, bias=False).to(device)
    with torch.no_grad():
        head.weight.copy_(torch.eye(lm.config.hidden_size))
    if init_from:
        from safetensors.torch import load_file

        from nla_audit.sidecar import read_model_sidecar

        meta = read_model_sidecar(init_from, "ar")
        load_adapter(lm, init_from, meta.adapter or {}, merge=False)  # no adapter block: one clear SidecarError
        head.weight.data = load_file(str(Path(init_from) / VALUE_HEAD_FILE))["weight"].float().to(device)
    else:
        add_lora(lm, rank, alpha)
    inner = strip_head(lm)
    return lm, inner, head, tok


def build_av(model: str, rank: int, alpha: float, device: str = "cpu", init_from: str | None = None,
             dtype: torch.dtype = torch.float32):
    """(causal LM with LoRA, tokenizer). Frozen base weights may be bf16; the LoRA factors stay fp32."""
    path = resolve_model_path(model)
    lm = load_causal_lm(path, dtype, device)
    tok = load_tokenizer(path)
    if init_from:
        from nla_audit.sidecar import read_model_sidecar

        load_adapter(lm, init_from, read_model_sidecar(init_from, "av").adapter or {}, merge=False)
    else:
        add_lora(lm, rank, alpha)
    return lm, tok


def round_scale(mean_norm: float) -> float:
    """'A round number a bit above the mean norm', the reference code's rule: 240.7 → 250, 125 → 150."""
    step = 10 ** math.floor(math.log10(mean_norm)) / 2
    return float(math.ceil(mean_norm * 1.02 / step) * step)


def export_av(lm: nn.Module, out: str | Path, model: str, d_model: int, tokens: TokenMeta, injection_scale: float,
              stage: str, trained_on: list[str], training: dict) -> Path:
    with atomic_dir(out) as tmp:
        adapter = save_adapter(lm, tmp)
        adapter["base"] = base_name(model)
        ModelSidecar(role="av", base_checkpoint=base_name(model), d_model=d_model, layer_index=None, tokens=tokens,
                     av_template=AV_TEMPLATE, ar_template=AR_TEMPLATE, injection_scale=injection_scale, stage=stage,
                     adapter=adapter, trained_on=tuple(trained_on), parent_checkpoints=(base_name(model),),
                     training=training, created_by="nla_audit.training").save(tmp)
    return Path(out)


def export_ar(lm: nn.Module, head: nn.Linear, out: str | Path, model: str, layer: int, tokens: TokenMeta | None,
              baselines: dict | None, stage: str, trained_on: list[str], training: dict) -> Path:
    """Write an AR checkpoint; ``baselines`` None (a parent without them, e.g. a released AR) leaves them unset."""
    from safetensors.torch import save_file

    d, b = head.weight.shape[0], baselines or {}
    with atomic_dir(out) as tmp:
        adapter = save_adapter(lm, tmp)
        adapter["base"] = base_name(model)
        save_file({"weight": head.weight.detach().float().cpu().contiguous()}, str(Path(tmp) / VALUE_HEAD_FILE))
        ModelSidecar(role="ar", base_checkpoint=base_name(model), d_model=d, layer_index=layer, tokens=tokens,
                     av_template=AV_TEMPLATE, ar_template=AR_TEMPLATE, mse_scale=math.sqrt(d), stage=stage,
                     baseline_rawvar=b.get("baseline_rawvar"), baseline_mean_direction=b.get("baseline_mean_direction"),
                     mean_direction=tuple(b["mean_direction"].tolist()) if b else None, adapter=adapter,
                     trained_on=tuple(trained_on), parent_checkpoints=(base_name(model),), training=training,
                     created_by="nla_audit.training").save(tmp)
    return Path(out)


def as_reconstructor(inner: nn.Module, head: nn.Linear, tok: Any, layer: int, d: int) -> ActivationReconstructor:
    """Wrap live training modules in the inference class, so training scores with the inference code path."""
    meta = ModelSidecar(role="ar", base_checkpoint="", d_model=d, layer_index=layer, tokens=None, av_template=None,
                        ar_template=AR_TEMPLATE, mse_scale=math.sqrt(d))
    return ActivationReconstructor(inner, head, tok, meta)


def sidecar_baselines(meta: Any) -> dict | None:
    """The fve baselines an exported AR's sidecar carries (as ``export_ar`` takes them), or None when it lacks them
    (e.g. a released AR): a continued or co-trained AR keeps its parent's, so its fve_nrm stays comparable."""
    if meta.baseline_rawvar is None or meta.baseline_mean_direction is None or meta.mean_direction is None:
        return None
    return {"baseline_rawvar": meta.baseline_rawvar, "baseline_mean_direction": meta.baseline_mean_direction,
            "mean_direction": torch.tensor(meta.mean_direction)}
