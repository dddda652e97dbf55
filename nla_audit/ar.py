"""The activation reconstructor (AR): explanation text → vector.

The target LM truncated after block K (``num_hidden_layers = K+1`` set in the config before loading), with
its final norm and ``lm_head`` removed, topped by a bias-free ``Linear(d, d)`` value head, reading
``Summary of the following text: <text>{explanation}</text> <summary>`` (raw text, tokenized with the
tokenizer's special tokens) and predicting at the last real token, as the reference code does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nla_audit.errors import InputError, SidecarError
from nla_audit.roundtrip import score_texts
from nla_audit.sidecar import AR_TEMPLATE, VALUE_HEAD_FILE, ModelSidecar  # noqa: F401  (VALUE_HEAD_FILE re-exported)

PER_LAYER_KEYS = ("layer_types", "no_rope_layers", "sliding_window_pattern_list")
NORM_NAMES = ("norm", "final_layernorm", "ln_f")


def truncate_config(config: Any, layer: int) -> Any:
    """Keep blocks 0..K: ``num_hidden_layers = K+1``, per-layer arrays cut to the same length."""
    cfg = getattr(config, "text_config", None) or config
    n = int(cfg.num_hidden_layers)
    if not 0 <= layer < n:
        raise SidecarError(f"AR layer {layer} is out of range for a {n}-block model", expected=f"0..{n - 1}")
    for key in PER_LAYER_KEYS:
        value = getattr(cfg, key, None)
        if isinstance(value, list) and len(value) == n:
            setattr(cfg, key, value[: layer + 1])
    cfg.num_hidden_layers = layer + 1
    return config


def strip_head(model: nn.Module) -> nn.Module:
    """Replace the final norm and the LM head by identities; return the inner decoder (``model.model``)."""
    inner = getattr(model, "model", None) or getattr(model, "transformer", None)
    for name in NORM_NAMES:
        if hasattr(inner, name):
            setattr(inner, name, nn.Identity())
            break
    else:
        raise SidecarError(f"cannot find the final norm of {type(model).__name__}", expected=f"one of {NORM_NAMES}")
    if hasattr(model, "lm_head"):
        model.lm_head = nn.Identity()
    return inner


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the rightmost 1 in each mask row: correct for either padding side."""
    return (mask.cumsum(1) * mask).argmax(1)


class ActivationReconstructor(nn.Module):
    """Reconstruct activation vectors from explanations."""

    def __init__(self, backbone: nn.Module, value_head: nn.Linear, tokenizer: Any, meta: ModelSidecar,
                 source: str = "") -> None:
        super().__init__()
        if meta.mse_scale is None:
            raise SidecarError(f"{source}: AR sidecar has no extraction.mse_scale", expected="a number or sqrt_d_model")
        self.backbone, self.value_head, self.tokenizer, self.meta = backbone, value_head, tokenizer, meta
        self.template = meta.ar_template or AR_TEMPLATE
        if "{explanation}" not in self.template:
            raise SidecarError(f"{source}: AR template has no {{explanation}} placeholder", fix="restore the sidecar")
        self.source = source

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, dtype: str = "auto", device: str | None = None) -> ActivationReconstructor:
        from safetensors.torch import load_file

        from nla_audit.checkpoint import load_backbone, read_sidecar, resolve_checkpoint
        from nla_audit.models import resolve_device, resolve_dtype

        ckpt = resolve_checkpoint(path_or_id)
        meta = read_sidecar(ckpt, "ar")
        if meta.layer_index is None:
            raise SidecarError(f"{ckpt}: AR sidecar does not give the layer K",
                               expected="critic.extraction_layer_index or extraction_layer_index")
        head_path = ckpt / VALUE_HEAD_FILE
        if not head_path.exists():
            raise SidecarError(f"{ckpt} has no {VALUE_HEAD_FILE}", expected="the AR's Linear(d, d) head",
                               fix="restore the AR checkpoint folder")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        full = meta.adapter is not None  # adapters are stored over the untruncated base
        model, tok = load_backbone(ckpt, meta, dt, dev,
                                   config_edit=lambda c: truncate_config(c, meta.layer_index) if full else _check_truncated(c, meta, ckpt))
        inner = strip_head(model)
        weight = load_file(str(head_path))["weight"]
        if tuple(weight.shape) != (meta.d_model, meta.d_model):
            raise SidecarError(f"{head_path}: weight shape {tuple(weight.shape)}", expected=f"({meta.d_model}, {meta.d_model})")
        head = nn.Linear(meta.d_model, meta.d_model, bias=False).to(dev)
        head.weight.data = weight.to(device=dev, dtype=torch.float32)
        tok.padding_side = "right"
        return cls(inner, head, tok, meta, str(ckpt)).eval()

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def prompt(self, explanation: str) -> str:
        return self.template.replace("{explanation}", explanation.strip())

    def encode(self, explanations: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # Pad to a multiple of 16: fewer distinct shapes keeps CPU kernels (oneDNN) from re-compiling per batch.
        enc = self.tokenizer([self.prompt(e) for e in explanations], add_special_tokens=True, padding=True,
                             pad_to_multiple_of=16,
                             truncation=max_length is not None, max_length=max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Predicted vectors [B, d] (fp32) at each row's last real token; differentiable (for training)."""
        hidden = self.backbone(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                               use_cache=False).last_hidden_state
        idx = last_token_index(attention_mask.to(self.device))
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
        return self.value_head(last.float())

    @torch.inference_mode()
    def reconstruct(self, explanations: list[str], batch_size: int = 32) -> torch.Tensor:
        """[n, d] predictions, one per explanation (the text inside the tags, without them)."""
        if isinstance(explanations, str) or not all(isinstance(e, str) for e in explanations):
            raise InputError("reconstruct() takes a list of strings", expected="list[str]")
        preds = [self(*self.encode(explanations[i:i + batch_size])) for i in range(0, len(explanations), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.zeros((0, self.meta.d_model))

    def score(self, explanations: list[str], gold: torch.Tensor, batch_size: int = 32) -> dict[str, torch.Tensor]:
        """mse_nrm, cos and (when the sidecar has a baseline) fve_nrm per row (``roundtrip.score_texts``)."""
        s = score_texts(self, explanations, gold, self.meta.fve_baseline(), batch_size)
        out = {"mse_nrm": s.mse, "cos": s.cos, "pred": s.pred}
        if s.fve is not None:
            out["fve_nrm"] = s.fve
        return out


def _check_truncated(config: Any, meta: ModelSidecar, ckpt: Path) -> Any:
    cfg = getattr(config, "text_config", None) or config
    layer = meta.require_layer()
    if int(cfg.num_hidden_layers) != layer + 1:
        raise SidecarError(f"{ckpt}: config has {cfg.num_hidden_layers} blocks",
                           expected=f"K+1 = {layer + 1} for layer K = {layer}",
                           fix="the AR checkpoint and its sidecar disagree; re-save the AR")
    return config
