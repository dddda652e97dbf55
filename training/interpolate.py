"""Weight-space interpolation of two checkpoints of one NLA role (WiSE-FT): θ = (1 − α)·θ_from + α·θ_to.

Why: continuing the shipped AR on the chat + text mix (chat NLA phase 5, docs/results/chat-nla.md) raised its
chat fve_nrm by +0.9 at template tokens but cost 0.031 on text, and reading each AV's cached explanations with
each AR put almost all of phase 5's text loss on the AR (``devscripts/cross_ar.py``). Interpolating the
fine-tuned weights with the ones they started from (Wortsman et al. 2022, "Robust fine-tuning of zero-shot
models") is the standard cheap remedy for forgetting after a short fine-tune: no training, one α per try, and
α is chosen on a validation split, never the test split.

Adapters (``nla_audit-lora-v1``) are interpolated factor by factor: B·A of the result is the interpolation of
the two B·A products only up to a term α(1 − α)·(B_to − B_from)(A_to − A_from), which is second order when
``to`` was continued from ``from`` (``init_from``), the intended use. Exact interpolation would need the rank
summed, doubling the folder's size. Both folders must hold the same files, keys and shapes, and agree on role,
base model, layer, d_model and adapter geometry; the result takes ``to``'s sidecar and records both parents.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nla_audit.errors import InputError
from nla_audit.sidecar import SIDECAR_NAME, now_iso, read_model_sidecar

ADAPTER_KEYS = ("format", "rank", "alpha", "targets", "base")


def interpolate_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 − alpha)·a + alpha·b key by key, in float32 and back to b's dtype; the keys and shapes must match."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha {alpha} is outside [0, 1]", expected="0 (the 'from' weights) … 1 (the 'to' weights)")
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))[:3]
        raise InputError(f"the checkpoints hold different tensors (e.g. {diff})",
                         fix="interpolate two checkpoints of one architecture and adapter geometry")
    out = {}
    for k, tb in b.items():
        ta = a[k]
        if ta.shape != tb.shape:
            raise InputError(f"tensor {k}: shapes {tuple(ta.shape)} and {tuple(tb.shape)} differ",
                             fix="interpolate two checkpoints of one architecture and adapter geometry")
        out[k] = ((1.0 - alpha) * ta.float() + alpha * tb.float()).to(tb.dtype).contiguous()
    return out


def _check_sidecars(a_dir: Path, b_dir: Path):
    ma, mb = read_model_sidecar(a_dir), read_model_sidecar(b_dir)
    facts = {"role": (ma.role, mb.role), "base model": (ma.base_model, mb.base_model),
             "layer": (ma.layer_index, mb.layer_index), "d_model": (ma.d_model, mb.d_model),
             "adapter": tuple(None if m.adapter is None else {k: m.adapter.get(k) for k in ADAPTER_KEYS}
                              for m in (ma, mb))}
    for name, (x, y) in facts.items():
        if x != y:
            raise InputError(f"the checkpoints differ in {name}: {x!r} vs {y!r}",
                             fix="interpolate an AV with an AV (or an AR with an AR) of the same target, layer and adapter")
    return ma, mb


def interpolate_checkpoints(a_dir: str | Path, b_dir: str | Path, alpha: float, out: str | Path) -> Path:
    """Write the α-interpolation of checkpoint folders ``a_dir`` (α = 0) and ``b_dir`` (α = 1) to ``out``,
    atomically (a temp folder renamed into place)."""
    from safetensors.torch import load_file, save_file

    from nla_audit.atomic import atomic_dir

    a_dir, b_dir = Path(a_dir), Path(b_dir)
    for d in (a_dir, b_dir):
        if not (d / SIDECAR_NAME).exists():
            raise InputError(f"{d} is not an NLA checkpoint folder (no {SIDECAR_NAME})",
                             fix="pass the av/ or ar/ folder of a trained NLA")
    if Path(out).resolve() in (a_dir.resolve(), b_dir.resolve()):
        raise InputError(f"--out {out} is one of the inputs", fix="write the interpolation to a new folder")
    ma, mb = _check_sidecars(a_dir, b_dir)
    files = sorted(p.name for p in b_dir.glob("*.safetensors"))
    missing = [f for f in files if not (a_dir / f).exists()]
    if not files or missing or sorted(p.name for p in a_dir.glob("*.safetensors")) != files:
        raise InputError(f"{a_dir} and {b_dir} hold different weight files", expected=f"both: {files}")
    with atomic_dir(out) as tmp:
        for f in files:
            save_file(interpolate_tensors(load_file(str(a_dir / f)), load_file(str(b_dir / f)), alpha), str(tmp / f))
        training = {**mb.training, "interpolation": {"from": str(a_dir), "to": str(b_dir), "alpha": alpha,
                                                     "method": "wise-ft, LoRA factor-wise"}}
        mb.with_(parent_checkpoints=(str(a_dir), str(b_dir)), training=training, created_at=now_iso(),
                 created_by="nla_audit.training.interpolate").save(tmp)
    return Path(out)
