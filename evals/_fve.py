"""Held-out reconstruction (fve_nrm) of any explainer that can reconstruct, on one set of activations.

The NLA reconstructs through its own round trip (AV explanation → AR); the SAE through its decoder; the floor is
the NLA fed *shuffled* activations (a seeded derangement) and scored against the true ones. Every row is scored
by ``nla_audit.roundtrip`` with the NLA's definition (``nla_audit.metrics``): vectors normalised to ``mse_scale``
(√d), fve_nrm = 1 − mse_nrm / B_rv with B_rv the training-set variance stored in the AR sidecar, so 0 means "no
better than predicting the mean direction" and rows of different explainers compare directly.

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
from nla_audit.metrics import derangement  # noqa: F401  (re-exported: one floor for every report)

SPLIT_SEED = 42


@dataclass
class Heldout:
    vectors: torch.Tensor  # [n, d] float32, raw activations
    doc_ids: list[str]
    source: str  # human-readable description for reports
    texts: list[str] = field(default_factory=list)  # the text up to and including each explained token


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
    groups: list[str] | None = None  # the document of each row: the CI resamples documents, not rows

    def summary(self, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
        lo, hi = bootstrap_ci(self.fve, n_boot, seed, self.groups)
        # the score in float64, as the interval is: a float32 mean can fall just outside a zero-width interval
        return {"task": "reconstruction", "explainer": self.explainer, "checkpoint": self.checkpoint,
                "metric": "fve_nrm", "n": len(self.fve), "n_docs": len(set(self.groups)) if self.groups else None,
                "score": float(np.mean(self.fve, dtype=np.float64)), "ci_low": lo, "ci_high": hi,
                "median": float(np.median(self.fve)), "mse_nrm": float(self.mse.mean()), "cos": float(self.cos.mean()),
                "failed": self.failed, "s_per_activation": self.seconds / max(1, len(self.fve)), **self.extra}


def bootstrap_ci(x: np.ndarray, n_boot: int = 2000, seed: int = 0, groups: Any = None) -> tuple[float, float]:
    """Seeded percentile bootstrap 95% interval of the mean.

    With ``groups`` (one label per row, e.g. the document id) whole groups are resampled and the mean is taken
    over every row of the drawn groups: positions of one document are correlated, so treating them as independent
    rows would give too narrow an interval. With one row per group this is the row bootstrap."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if groups is None:
        means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    else:
        if len(groups) != len(x):
            raise ValueError(f"{len(groups)} group labels for {len(x)} values")
        _, inv = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        sums, counts = np.bincount(inv, weights=x), np.bincount(inv).astype(np.float64)
        draw = rng.integers(0, len(sums), size=(n_boot, len(sums)))
        means = sums[draw].sum(1) / counts[draw].sum(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# ------------------------------------------------------------------------------------------------ data
def _read(path: str, max_rows: int | None, empty: InputError, source: str) -> Heldout:
    """Vectors, doc ids and texts of an activation parquet (the first ``max_rows``); ``empty`` if none."""
    from nla_audit.vectors import read_vectors

    vecs, cols = read_vectors(path, ["doc_id", "detokenized_text_truncated"])
    vecs = vecs[:max_rows]
    if len(vecs) == 0:
        raise empty
    ids = list(cols["doc_id"][:len(vecs)])
    return Heldout(torch.from_numpy(np.array(vecs, dtype=np.float32)), ids,
                   f"{len(vecs)} activations of {len(set(ids))} {source}",
                   list(cols["detokenized_text_truncated"][:len(vecs)]))


def heldout_from_parquet(path: str, model: str, layer: int, max_rows: int | None = None) -> Heldout:
    """Rows of an extracted activation parquet, refused when its sidecar names another site."""
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.site import check_same_site

    check_same_site((model, layer), read_dataset_sidecar(path))
    return _read(path, max_rows, InputError(f"{path} holds no activations",
                                            expected="a non-empty parquet from nla-audit extract"),
                 f"documents from {os.path.basename(path)}")


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
        empty = InputError(f"no activations from the {k} test-split documents of {corpus!r} (all too short?)",
                           fix="use a corpus with longer documents, more --docs, or --data PARQUET")
        return _read(out, None, empty, f"test-split documents of corpus {corpus!r}")


def training_overlap(doc_ids: list[str], trained_on: list[str]) -> str:
    """How many held-out documents appear in the training parquets a checkpoint's sidecar names (those that
    still exist here); the claim "held out" is only as good as this check."""
    from nla_audit.vectors import read_vectors

    held, found, shared = set(doc_ids), [], set()
    for path in dict.fromkeys(trained_on):
        if path and os.path.exists(path):
            found.append(path)
            shared |= held & set(read_vectors(path, ["doc_id"])[1]["doc_id"])
    if not found:
        return "overlap with training data not checked (the training parquets named in the sidecars are not here)"
    return (f"{len(shared)} of {len(held)} held-out documents appear in the {len(found)} training parquet(s) named "
            f"in the sidecars" + ("" if shared else " (disjoint)"))


# ------------------------------------------------------------------------------------------------ scoring
def _metrics(pred: torch.Tensor, gold: torch.Tensor, mse_scale: float, base: float) -> tuple[np.ndarray, ...]:
    """(fve, mse, cos) per row as numpy, by ``roundtrip.score_reconstructions`` (every explainer alike)."""
    from nla_audit.roundtrip import score_reconstructions

    s = score_reconstructions(pred, gold, mse_scale, base)
    return s.require_fve().numpy(), s.mse.numpy(), s.cos.numpy()


def nla_reconstruction(nla: Any, data: Heldout, name: str, base: float, shuffled: bool = False,
                       temperature: float = 0.0, max_new_tokens: int = 96, batch_size: int = 16,
                       seed: int = 0, retries: int | None = None) -> Reconstruction:
    """The NLA round trip (``roundtrip.round_trip``) on every held-out row, or, as the floor, on the derangement
    of the rows by ``seed``; scored with the common ``base`` (B_rv) so every row of a benchmark shares one
    denominator; ``retries`` (default: the product's, ``av.DEFAULT_RETRIES``) resamples unclosed explanations."""
    from nla_audit.av import DEFAULT_RETRIES
    from nla_audit.roundtrip import floor_order, round_trip

    gold = data.vectors
    if shuffled:
        floor_order(len(gold), seed)  # fewer than 2 rows: refused before anything is generated
    nla.av.explain(gold[:1], max_new_tokens=2)  # warm-up, so one-off setup is not billed to the timing
    t0 = time.perf_counter()
    rt = round_trip(nla.av, nla.ar, gold, base, shuffled=shuffled, seed=seed, max_new_tokens=max_new_tokens,
                    temperature=temperature, batch_size=batch_size,
                    retries=DEFAULT_RETRIES if retries is None else retries)
    seconds = time.perf_counter() - t0
    return Reconstruction(name, "nla-shuffled" if shuffled else "nla", name, rt.require_fve().numpy(),
                          rt.mse.numpy(), rt.cos.numpy(), seconds, failed=rt.failed_rate,
                          extra={"example": rt.texts[0][:200] if rt.explanations else ""}, groups=list(data.doc_ids))


def sae_reconstruction(sae_explainer: Any, data: Heldout, mse_scale: float, base: float,
                       name: str = "sae") -> list[Reconstruction]:
    """Two rows. ``sae``: the decoder applied to only the top-n latents its explanation lists (what the text
    conveys, at exact activations; its time is that of writing the explanations). ``sae-decoder``: the full
    decoder over all active latents, a reconstruction reference that no explanation carries."""
    sae = sae_explainer.sae
    gold = data.vectors
    t0 = time.perf_counter()
    sae_explainer.describe(gold)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        z = sae.encode(gold.to(sae.device).to(sae.dtype))
        vals, idx = z.float().topk(min(sae_explainer.top_n, z.shape[1]), dim=1)
        shown = torch.zeros_like(z).scatter_(1, idx, vals.clamp_min(0).to(z.dtype))
        t1 = time.perf_counter()
        full = sae.decode(z).float().cpu()
        decode_s = time.perf_counter() - t1
        top = sae.decode(shown).float().cpu()
    rows = []
    for label, pred, secs, l0 in ((name, top, seconds, (shown > 0).float().sum(1).mean()),
                                  (f"{name}-decoder", full, decode_s, (z > 0).float().sum(1).mean())):
        fve, mse, cos = _metrics(pred, gold, mse_scale, base)
        rows.append(Reconstruction(name, label, name, fve, mse, cos, secs, extra={"l0": float(l0)},
                                   groups=list(data.doc_ids)))
    return rows


def token_lookup_reconstruction(train_paths: list[str], data: Heldout, tokenizer: Any, mse_scale: float,
                                base: float, site: Any = None) -> Reconstruction | None:
    """Reference: each activation predicted by the training mean direction at the same final token
    (``nla_audit.baselines.token_lookup``), fitted on the training parquets that exist here and, given ``site``
    (model, layer), were extracted there (an NLA adapted from another model lists its parent's data too); None
    if no parquet qualifies. What an explanation naming only the current token could carry."""
    from nla_audit.baselines.token_lookup import TokenLookup, final_token_ids
    from nla_audit.vectors import read_vectors

    vecs, ids = [], []
    for path in dict.fromkeys(p for p in train_paths if os.path.exists(p) and _at_site(p, site)):
        v, cols = read_vectors(path, ["detokenized_text_truncated"])
        vecs.append(torch.from_numpy(np.array(v, dtype=np.float32)))
        ids += final_token_ids(tokenizer, list(cols["detokenized_text_truncated"]))
    if not vecs or not data.texts:
        return None
    t0 = time.perf_counter()
    lookup = TokenLookup.fit(torch.cat(vecs), ids)
    test_ids = final_token_ids(tokenizer, data.texts)
    pred = lookup.predict(test_ids)
    secs = time.perf_counter() - t0
    fve, mse, cos = _metrics(pred, data.vectors, mse_scale, base)
    return Reconstruction("token-lookup", "token-lookup", "-", fve, mse, cos, secs,
                          extra={"coverage": lookup.coverage(test_ids), "train_rows": len(ids)},
                          groups=list(data.doc_ids))


def _at_site(path: str, site: Any) -> bool:
    from nla_audit.errors import NLAAuditError
    from nla_audit.site import Site

    if site is None:
        return True
    try:
        return Site.of(path)[0].same_as(Site.of(site)[0])
    except NLAAuditError:  # no readable dataset sidecar: cannot tell, so leave it out
        return False


def mean_direction_reconstruction(mean_direction: Any, data: Heldout, mse_scale: float,
                                  base: float) -> Reconstruction:
    """Reference: every activation 'reconstructed' as the training set's mean direction (a constant; the AR
    sidecar stores it). Its fve is 1 − B_mn/B_rv, typically below 0; predicting the mean *vector* scores ≈ 0."""
    gold = data.vectors
    pred = torch.as_tensor(mean_direction, dtype=torch.float32)[None].expand_as(gold)
    fve, mse, cos = _metrics(pred, gold, mse_scale, base)
    return Reconstruction("mean-direction", "constant", "-", fve, mse, cos, 0.0, groups=list(data.doc_ids))
