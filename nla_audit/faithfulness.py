"""The AR as a verifier: which claims of an explanation does the reconstruction rely on?

Delete one claim (a sentence) from an explanation and reconstruct the activation from what is left: the rise
in reconstruction error (``mse_nrm``) is how much the AR relied on that claim. A claim whose deletion costs
nothing carried no information about the activation, however plausible it reads. Pair it with steering
(``steering.py``): a faithful claim is one the AR relies on *and* whose edit steers the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from nla_audit.errors import InputError


def claims(explanation: str) -> list[str]:
    """The explanation's sentences (its claims), in order; blank pieces dropped."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", explanation.strip())
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class ClaimEffect:
    claim: str
    mse_without: float
    delta_mse: float  # mse without the claim − mse with the whole explanation (> 0: the AR relied on it)


def claim_effects(nla: Any, explanation: str, vector: torch.Tensor) -> tuple[float, list[ClaimEffect]]:
    """(mse_nrm of the whole explanation, one ``ClaimEffect`` per claim) for the activation ``vector`` [d]."""
    from nla_audit.metrics import mse_nrm

    parts = claims(explanation)
    if not parts:
        raise InputError("the explanation is empty", expected="an explanation with at least one sentence")
    v = vector.float().reshape(1, -1)
    if v.shape[1] != nla.ar.meta.d_model:
        raise InputError(f"a vector of width {v.shape[1]} for an AR of width {nla.ar.meta.d_model}")
    texts = [" ".join(parts)] + [" ".join(parts[:i] + parts[i + 1:]) or "." for i in range(len(parts))]
    pred = nla.ar.reconstruct(texts)
    mse = mse_nrm(pred, v.expand(len(texts), -1), nla.ar.meta.mse_scale).tolist()
    return mse[0], [ClaimEffect(c, m, m - mse[0]) for c, m in zip(parts, mse[1:])]
