"""The round trip, written once: AV explanation → AR reconstruction → per-row scores against the activation.

Every report of NLA fidelity (``nla-audit explain``, the evals' ``fve_nrm`` column, ``nla-audit bench``, the
training curves and the benchmarks) scores through these functions, so a number means the same thing wherever it
is printed: ``mse_nrm`` after normalising both vectors to ``mse_scale`` (√d), ``cos``, and ``fve_nrm = 1 −
mse_nrm / B_rv`` with the caller's B_rv (``nla_audit.metrics``).

**The floor** (``round_trip(..., shuffled=True)``) is the same AV and AR with each row's input replaced by another
row's activation, the seeded derangement ``metrics.derangement``, and the reconstruction scored against the row's
*own* activation. A derangement rather than any shuffle: a permutation with fixed points would let some rows read
their own activation and lift the floor by chance, by an amount that depends on the seed and the row count.
What the floor measures is what explanations score when they carry nothing about *this* activation (only what
activations of the set share), so the gap to it is what the AV reads from the vector.

Untagged AV outputs (no ``<explanation>`` pair) are scored on their text as it is, as an auditor would read
them; GRPO's training reward instead gives them an orthogonal guess's score, through ``penalise_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from nla_audit.errors import InputError
from nla_audit.metrics import FAILED_REWARD, cosine, derangement, fve_nrm, mse_nrm

ORTHOGONAL_MSE = -FAILED_REWARD  # mse_nrm of a reconstruction orthogonal to the activation (cos 0, scale √d)


@dataclass(frozen=True)
class RoundTrip:
    """Per-row scores of reconstructions against the activations they should match.

    ``fve`` is None when no B_rv was given (an AR sidecar without baselines). ``read[i]`` is the row whose
    activation the AV read to explain row ``i`` (``i`` itself, or its derangement partner for the floor); empty
    ``explanations`` and ``read`` when texts or reconstructions were scored directly."""

    pred: torch.Tensor  # [n, d] float32 reconstructions
    mse: torch.Tensor  # [n] mse_nrm
    cos: torch.Tensor  # [n]
    fve: torch.Tensor | None  # [n] fve_nrm, or None without B_rv
    explanations: tuple[Any, ...] = ()  # the AV's outputs (``av.Explanation``), one per row
    read: torch.Tensor | None = None  # [n] long: the row each explanation was read from

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.explanations]

    @property
    def failed_rate(self) -> float:
        """Share of AV outputs without a closed explanation tag (0 when no explanations were generated)."""
        return sum(not e.ok for e in self.explanations) / max(1, len(self.explanations))

    def require_fve(self) -> torch.Tensor:
        """``fve``, or one clear line when the scores were made without B_rv."""
        if self.fve is None:
            raise InputError("fve_nrm was asked for, but these scores were made without B_rv",
                             fix="use an AR whose sidecar records baseline_rawvar, or pass b_rv")
        return self.fve

    def take(self, index: torch.Tensor) -> RoundTrip:
        """The rows at ``index`` (e.g. one sample per group of ``best_of``), every field alike."""
        idx = index.tolist()
        return replace(self, pred=self.pred[index], mse=self.mse[index], cos=self.cos[index],
                       fve=None if self.fve is None else self.fve[index],
                       explanations=tuple(self.explanations[i] for i in idx) if self.explanations else (),
                       read=None if self.read is None else self.read[index])


def score_reconstructions(pred: torch.Tensor, gold: torch.Tensor, mse_scale: float,
                          b_rv: float | None = None) -> RoundTrip:
    """Score reconstructions (any explainer's: the AR's, an SAE decoder's, a constant) against ``gold``, row by
    row, in float32; pure. The one place the three numbers are made from a prediction."""
    pred, gold = pred.float(), gold.float()
    mse = mse_nrm(pred, gold, mse_scale)
    return RoundTrip(pred=pred, mse=mse, cos=cosine(pred, gold), fve=None if b_rv is None else fve_nrm(mse, b_rv))


def score_texts(ar: Any, texts: list[str], gold: torch.Tensor, b_rv: float | None = None,
                batch_size: int = 32) -> RoundTrip:
    """The AR's reconstruction of each text (``ar.reconstruct``, untruncated), scored against ``gold``."""
    pred = ar.reconstruct(texts, batch_size)
    return score_reconstructions(pred, gold, ar.meta.require_mse_scale(), b_rv)


def floor_order(n: int, seed: int = 0) -> torch.Tensor:
    """The floor's input order (``metrics.derangement``); refuses fewer than 2 rows, where no row has another's
    activation to read and the "floor" would be the round trip itself."""
    if n < 2:
        raise InputError(f"the shuffled floor needs at least 2 activations, got {n}",
                         fix="score more rows (more held-out documents, e.g. --docs)")
    return derangement(n, seed)


def round_trip(av: Any, ar: Any, vectors: torch.Tensor, b_rv: float | None = None, *, shuffled: bool = False,
               seed: int = 0, sample_seed: int | None = None, max_new_tokens: int = 150, temperature: float = 0.0,
               batch_size: int = 16, ar_batch_size: int = 32, retries: int = 0) -> RoundTrip:
    """Explain each row of ``vectors`` with the AV, reconstruct the texts with the AR, score against ``vectors``.

    ``shuffled=True`` is the floor: the AV reads ``vectors[floor_order(n, seed)]`` (no row reads its own), and the
    scores are still against ``vectors``. Sampled decoding (``temperature > 0``) is seeded by ``sample_seed``
    (default: ``seed``), so a rerun gives the same texts; greedy decoding takes no seed.

    Args:
        av: anything with ``explain(vectors, max_new_tokens=, temperature=, batch_size=, seed=)`` returning
            objects with ``text`` and ``ok`` (``ActivationVerbalizer``, the vLLM verbalizer).
        ar: anything with ``reconstruct(texts, batch_size)`` and ``meta.require_mse_scale()``.
        b_rv: the fve_nrm denominator; None gives ``fve = None``.
        retries: resamples of each unclosed explanation (``av.resample_unclosed``); 0 scores every first decode.
    """
    gold = vectors
    read = floor_order(len(gold), seed) if shuffled else torch.arange(len(gold))
    sample = seed if sample_seed is None else sample_seed
    expl = av.explain(gold[read] if shuffled else gold, max_new_tokens=max_new_tokens, temperature=temperature,
                      batch_size=batch_size, seed=sample if temperature > 0 else None,
                      **({"retries": retries} if retries else {}))
    scored = score_texts(ar, [e.text for e in expl], gold, b_rv, ar_batch_size)
    return replace(scored, explanations=tuple(expl), read=read)


def penalise_failed(mse: torch.Tensor, failed: torch.Tensor) -> torch.Tensor:
    """``mse`` with the ``failed`` rows (bool mask) set to ``ORTHOGONAL_MSE``: GRPO's reward rule, under which an
    unparsable, truncated or over-long sample scores as an orthogonal guess whatever its text reconstructs to,
    so the policy gains nothing by ending without tags. Reports do not use it: they score every text as is."""
    return torch.where(failed, torch.full_like(mse, ORTHOGONAL_MSE), mse)
