"""Round-trip metrics, defined as in the reference code. Pure tensor functions, all in float32.

Both vectors are rescaled to L2 norm ``mse_scale`` (√d by default) before the MSE, so with s = √d,
``mse_nrm = 2 (1 − cos)`` ∈ [0, 4] and an orthogonal guess scores 2. ``fve_nrm = 1 − mse_nrm / B_rv`` where
B_rv is the variance of the normalised *training* vectors; compare NLAs by fve_nrm, not cosine (on
low-variance layers every cosine is ≈ 1).
"""

from __future__ import annotations

import math

import torch

FAILED_REWARD = -2.0  # what an orthogonal reconstruction scores; given to untagged/truncated AV samples


Z95 = 1.959963984540054


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (95% by default) for k successes out of n; (nan, nan) for n = 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def normalize(v: torch.Tensor, scale: float) -> torch.Tensor:
    """Rescale rows of ``v`` to L2 norm ``scale`` (norm in fp32, clamped at 1e-12)."""
    v = v.float()
    return v / (v.norm(dim=-1, keepdim=True).clamp_min(1e-12) / scale)


def mse_nrm(pred: torch.Tensor, gold: torch.Tensor, mse_scale: float) -> torch.Tensor:
    """Per-row mean over dims of the squared difference after normalising both to ``mse_scale``."""
    return (normalize(pred, mse_scale) - normalize(gold, mse_scale)).pow(2).mean(dim=-1)


def cosine(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(pred.float(), gold.float(), dim=-1)


def fve_nrm(mse: torch.Tensor, baseline_rawvar: float) -> torch.Tensor:
    """Fraction of variance explained against the raw-variance baseline B_rv."""
    return 1.0 - mse / baseline_rawvar


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """The floor's input order: a seeded permutation with no fixed point (each row reads another row's
    activation). One definition for every report (CLI, evals, training curves, benchmarks), so "floor" always
    means the same thing: a random cycle through all rows (row ``order[k]`` reads ``order[k+1]``)."""
    if n < 2:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[order] = torch.roll(order, -1)
    return out


def default_mse_scale(d_model: int) -> float:
    return math.sqrt(d_model)


def baselines(vectors: torch.Tensor, mse_scale: float, max_rows: int = 50_000) -> dict:
    """B_rv (mean squared deviation of normalised vectors from their mean) and B_mn (MSE of the best
    constant direction), over at most ``max_rows`` rows, plus that mean direction."""
    v = normalize(vectors[:max_rows], mse_scale)
    mu = v.mean(dim=0)
    b_rv = (v - mu).pow(2).mean().item()
    mu_dir = normalize(mu[None], mse_scale)[0]
    b_mn = (v - mu_dir).pow(2).mean().item()
    return {"baseline_rawvar": b_rv, "baseline_mean_direction": b_mn, "mean_direction": mu_dir}


def summarize(values: torch.Tensor) -> dict:
    v = values.float()
    if v.numel() == 0:
        return {"mean": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": v.mean().item(), "median": v.median().item(), "min": v.min().item(), "max": v.max().item(),
            "n": int(v.numel())}


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based; ties share the mean of their ranks)."""
    v = values.double().flatten()
    order = v.argsort()
    r = torch.empty_like(v)
    r[order] = torch.arange(len(v), dtype=torch.double)
    for x in v.unique():
        tie = v == x
        r[tie] = r[tie].mean()
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation; nan when either side is constant or there are fewer than 3 pairs."""
    if a.numel() != b.numel():
        raise ValueError(f"spearman of {a.numel()} and {b.numel()} values")
    if a.numel() < 3:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).item()
    return float((ra * rb).sum().item() / den) if den > 0 else float("nan")
