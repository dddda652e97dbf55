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


@dataclass(frozen=True)
class ClaimSteering:
    claim: str
    delta_mse: float  # the AR's reliance on the claim (see ``ClaimEffect``)
    kl: float  # KL(steered ‖ plain) of the next token when the claim's deletion is steered in at the token


def claim_steering(nla: Any, explanation: str, ids: list[int], strength: float = 1.0,
                   target: Any = None) -> list[ClaimSteering]:
    """For the activation at the last token of ``ids``: each claim's reconstruction cost of deleting it, and how
    far steering with that deletion (``AR(without the claim) − AR(whole)``, at ``strength`` × the activation's
    norm, at that token only) moves the next-token distribution. Faithful explanations put the two together:
    the claims the AR relies on are the ones whose edits move the model."""
    from nla_audit.extract import text_activations
    from nla_audit.steering import next_token_shift, nla_direction

    target = target or nla.target
    if len(ids) < 2:
        raise InputError(f"a prompt of {len(ids)} tokens", expected="at least 2 tokens (position 0 is never steered)")
    vector = text_activations(target, nla.layer, ids)[-1]
    _, effects = claim_effects(nla, explanation, vector)
    parts = [e.claim for e in effects]
    norm = float(vector.norm())
    out = []
    for i, e in enumerate(effects):
        without = " ".join(parts[:i] + parts[i + 1:]) or "."
        kl = next_token_shift(target, nla.layer, ids, nla_direction(nla, " ".join(parts), without), strength, norm)
        out.append(ClaimSteering(e.claim, e.delta_mse, kl))
    return out
