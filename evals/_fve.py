"""Held-out reconstruction (fve_nrm) of any explainer that can reconstruct, on one set of activations.

The NLA reconstructs through its own round trip (AV explanation → AR); the SAE through its decoder; the floor is
the NLA fed *shuffled* activations and scored against the true ones. All rows use the NLA's definition
(``nla_audit.metrics``): vectors normalised to ``mse_scale`` (√d), fve_nrm = 1 − mse_nrm / B_rv with B_rv the
training-set variance stored in the AR sidecar, so 0 means "no better than predicting the mean direction" and
rows of different explainers compare directly.

Held-out data is either an extracted activation parquet (checked against the site through its dataset sidecar)
or the ``test`` split of a corpus (the document-level split rule of ``nla-audit split``: sha256 of seed|doc id,
seed 42, fractions .3/.3/.3/.1), extracted on the fly, so it never overlaps what datagen trained on.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nla_audit.errors import InputError

SPLIT_SEED = 42


@dataclass
class Heldout:
    vectors: torch.Tensor  # [n, d] float32, raw activations
    doc_ids: list[str]
    source: str  # human-readable description for reports


@dataclass
class Reconstruction:
    """Per-row metrics of one explainer on a held-out set, plus what it cost."""

    name: str
    explainer: str  # nla | nla-shuffled | sae
    checkpoint: str
    fve: np.ndarray
    mse: np.ndarray
    cos: np.ndarray
    seconds: float  # wall time to explain (and reconstruct) every row
    failed: float | None = None  # NLA only: fraction of outputs without a closed explanation tag
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
        lo, hi = bootstrap_ci(self.fve, n_boot, seed)
        return {"task": "reconstruction", "explainer": self.explainer, "checkpoint": self.checkpoint,
                "metric": "fve_nrm", "n": len(self.fve), "score": float(self.fve.mean()), "ci_low": lo, "ci_high": hi,
                "median": float(np.median(self.fve)), "mse_nrm": float(self.mse.mean()), "cos": float(self.cos.mean()),
                "failed": self.failed, "s_per_activation": self.seconds / max(1, len(self.fve)), **self.extra}


def bootstrap_ci(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Seeded percentile bootstrap 95% interval of the mean."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# ------------------------------------------------------------------------------------------------ data
def heldout_from_parquet(path: str, model: str, layer: int, max_rows: int | None = None) -> Heldout:
    """Rows of an extracted activation parquet, refused when its sidecar names another site."""
    from nla_audit.baselines.sae import check_same_site
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.vectors import read_vectors

    check_same_site((model, layer), read_dataset_sidecar(path))
    vecs, cols = read_vectors(path, ["doc_id"])
    if max_rows is not None:
        vecs, cols["doc_id"] = vecs[:max_rows], cols["doc_id"][:max_rows]
    if len(vecs) == 0:
        raise InputError(f"{path} holds no activations", expected="a non-empty parquet from nla-audit extract")
    return Heldout(torch.from_numpy(np.array(vecs, dtype=np.float32)), list(cols["doc_id"]),
                   f"{len(vecs)} activations of {len(set(cols['doc_id']))} documents from {os.path.basename(path)}")


def heldout_from_corpus(target: Any, layer: int, corpus: str, n_docs: int, positions: int, seed: int = 7) -> Heldout:
    """Extract ``positions`` sampled positions from each of the first ``n_docs`` test-split documents."""
    from nla_audit.corpus import iter_documents
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.split import DEFAULT_FRACTIONS, assign_split

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "test.jsonl")
        k = 0
        with open(path, "w", encoding="utf-8") as f:
            for d in iter_documents(corpus):
                if assign_split(d.id, dict(DEFAULT_FRACTIONS), SPLIT_SEED) == "test":
                    f.write(json.dumps({"id": d.id, "text": d.text}) + "\n")
                    k += 1
                    if k >= n_docs:
                        break
        if k == 0:
            raise InputError(f"corpus {corpus!r} has no documents in the test split",
                             fix="pass a larger corpus, or --data with an extracted held-out parquet")
        out = os.path.join(tmp, "test.parquet")
        extract_activations(ExtractConfig(out=out, corpus=path, layer=layer, positions_per_doc=positions,
                                          min_position=10, seed=seed), target=target, progress=False)
        return _read(out, corpus, k)


def _read(path: str, corpus: str, n_docs: int) -> Heldout:
    from nla_audit.vectors import read_vectors

    vecs, cols = read_vectors(path, ["doc_id"])
    return Heldout(torch.from_numpy(np.array(vecs, dtype=np.float32)), list(cols["doc_id"]),
                   f"{len(vecs)} activations of {n_docs} test-split documents of corpus {corpus!r} (never trained on)")


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A seeded permutation with no fixed point (each row gets another row's activation)."""
    if n < 2:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[order] = torch.roll(order, -1)  # a random cycle through all rows: row order[k] reads order[k+1]
    return out


# ------------------------------------------------------------------------------------------------ scoring
def _metrics(pred: torch.Tensor, gold: torch.Tensor, mse_scale: float, base: float) -> tuple[np.ndarray, ...]:
    from nla_audit.metrics import cosine, fve_nrm, mse_nrm

    mse = mse_nrm(pred.float(), gold.float(), mse_scale)
    return fve_nrm(mse, base).numpy(), mse.numpy(), cosine(pred.float(), gold.float()).numpy()


def nla_reconstruction(nla: Any, data: Heldout, name: str, shuffled: bool = False, temperature: float = 0.0,
                       max_new_tokens: int = 96, batch_size: int = 16, seed: int = 0) -> Reconstruction:
    """The NLA round trip on every held-out row (or, as the floor, on a derangement of the rows)."""
    base = nla.ar.meta.fve_baseline()
    if base is None:
        raise InputError(f"the AR of {name} has no baseline_rawvar in its sidecar, so fve_nrm is undefined",
                         fix="use an AR exported by nla-audit training (it stores the training-set variance)")
    gold = data.vectors
    inp = gold[derangement(len(gold), seed)] if shuffled else gold
    t0 = time.perf_counter()
    expl = nla.av.explain(inp, max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature,
                          seed=seed if temperature > 0 else None)
    pred = nla.ar.reconstruct([e.text for e in expl])
    seconds = time.perf_counter() - t0
    fve, mse, cos = _metrics(pred, gold, nla.ar.meta.mse_scale, base)
    return Reconstruction(name, "nla-shuffled" if shuffled else "nla", name, fve, mse, cos, seconds,
                          failed=sum(not e.ok for e in expl) / max(1, len(expl)),
                          extra={"example": expl[0].text[:200] if expl else ""})


def sae_reconstruction(sae_explainer: Any, data: Heldout, mse_scale: float, base: float,
                       name: str = "sae") -> Reconstruction:
    """The SAE's decoder output (reconstruction) and the time to describe every row (its explanation cost)."""
    sae = sae_explainer.sae
    gold = data.vectors
    t0 = time.perf_counter()
    sae_explainer.describe(gold)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        z = sae.encode(gold.to(sae.device).to(sae.dtype))
        pred = sae.decode(z).float().cpu()
    fve, mse, cos = _metrics(pred, gold, mse_scale, base)
    return Reconstruction(name, "sae", name, fve, mse, cos, seconds,
                          extra={"l0": float((z > 0).float().sum(1).mean())})
