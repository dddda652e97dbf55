"""SFT data whose explanations are the AV's own samples: AR refit data, or AV expert-iteration targets.

``stage="ar_sft"`` (the default) writes AR-SFT data, to refit an AR to the AV it will read.

Why: on the shipped NLA the AR's 80 co-training steps during GRPO added more held-out fve_nrm than the AV's
own GRPO (the warm AV read by the GRPO'd AR: +0.125; the GRPO'd AV read by the warm AR: +0.087; BENCHMARKS.md),
and those were only 80 optimiser steps. Sampling the finished AV on training-split activations and
continuing AR SFT on the samples (``train ar-sft --set init_from=<AR>``) gives the AR many more steps on the
text it will actually read, without GRPO's cost. A departure from the reference, where the AR learns from
AV text only online during RL.

``stage="av_sft"`` with ``best_of = k`` and an ``ar`` writes AV-SFT data for one round of expert iteration
(rejection-sampling fine-tuning, ReST / STaR style): k explanations are sampled per training activation and
the one the AR reconstructs closest to that activation becomes the SFT target (``train av-sft --set
init_from=<AV>`` then continues the AV on them). Why: best-of-8 selected by the AR beats one sample by
+0.068 held-out fve_nrm on the shipped NLA (BENCHMARKS.md), and distilling the selection into the policy is
the cheapest policy improvement with no policy gradient: it needs sampling and SFT only, no reference model,
no per-token log-probabilities of the rollouts. A departure from the reference, whose RL is GRPO only. The
selection is against the training activation, never a test one, so single-sample held-out scores stay honest.

Rows are sampled in chunks, each written atomically under ``<out>.parts/`` with its own seed, so a stopped
run resumes where it stopped and a rerun reproduces it. Untagged samples are dropped (GRPO's AR skips them
too). Documents are then split by a seeded hash: ``eval_fraction`` of them go to an ``ar_eval`` parquet
(``<out stem>.eval.parquet``) for the AR SFT's held-out curve, so that curve never reads test-split documents.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nla_audit.sidecar import AR_TEMPLATE, AV_TEMPLATE, read_dataset_sidecar, write_dataset_sidecar
from nla_audit.training.datagen import PROVENANCE, _write
from nla_audit.vectors import read_vectors

STAGES = ("ar_sft", "av_sft")


@dataclass(frozen=True)
class AVTextsConfig:
    av: str  # AV checkpoint whose samples become the explanations
    data: str  # activation parquet of a training split (e.g. rl.parquet); never the test split
    out: str  # the ar_sft parquet to write; its eval part goes beside it as <stem>.eval.parquet
    max_rows: int = 0  # 0 = every row; else a seeded choice of this many
    temperature: float = 0.7  # the decoding the NLA is scored and used with
    max_new_tokens: int = 96
    batch_size: int = 32
    chunk_rows: int = 256
    eval_fraction: float = 0.05
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    stage: str = "ar_sft"  # ar_sft: AR refit data; av_sft: AV expert-iteration targets (needs best_of >= 2 and ar)
    best_of: int = 1  # > 1: sample this many per row and keep the one the AR reconstructs closest to the activation
    ar: str | None = None  # the AR that scores the samples when best_of > 1

    def __post_init__(self) -> None:
        from nla_audit.errors import ConfigError

        if self.stage not in STAGES:
            raise ConfigError(f"stage = {self.stage!r}", expected=" or ".join(STAGES))
        if self.best_of < 1 or (self.best_of > 1 and (self.ar is None or self.temperature <= 0)):
            raise ConfigError(f"best_of = {self.best_of} (ar {self.ar}, temperature {self.temperature})",
                              expected="best_of >= 1; best_of > 1 needs an ar to score the samples and temperature > 0",
                              fix="set ar=<AR checkpoint> temperature=0.7")
        if self.stage == "av_sft" and self.best_of < 2:
            raise ConfigError(f"stage = av_sft with best_of = {self.best_of}",
                              expected="best_of >= 2 (the AV's own unselected samples teach it nothing)",
                              fix="set best_of=8 ar=<AR checkpoint>")
        for k in ("max_new_tokens", "batch_size", "chunk_rows"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} = {getattr(self, k)}", expected="an integer >= 1")
        if self.max_rows < 0:
            raise ConfigError(f"max_rows = {self.max_rows}", expected=">= 0 (0 = every row)")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction = {self.eval_fraction}", expected="0 < eval_fraction < 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature = {self.temperature}", expected=">= 0 (0 = greedy)")


def row_order(n: int, max_rows: int, seed: int) -> np.ndarray:
    """The rows to sample, a seeded choice kept in file order (so chunks are spread over documents)."""
    pick = np.random.default_rng(seed).permutation(n)
    return np.sort(pick[:max_rows] if max_rows else pick)


def in_eval(doc_id: str, fraction: float, seed: int) -> bool:
    """A document's side of the train/eval split: a pure function of (seed, doc_id), like the corpus split."""
    u = int.from_bytes(hashlib.sha256(f"av_texts|{seed}|{doc_id}".encode()).digest()[:8], "little") / 2**64
    return u < fraction


def _sample_chunks(cfg: AVTextsConfig, vecs: np.ndarray, rows: np.ndarray, parts: Path, progress: bool) -> None:
    """Sample every missing chunk; each part file holds (row, text, ok[, mse_nrm, mse_first]) and is renamed
    into place when whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.atomic import atomic_path
    from nla_audit.progress import RateProgress

    parts.mkdir(parents=True, exist_ok=True)
    chunks = [rows[i: i + cfg.chunk_rows] for i in range(0, len(rows), cfg.chunk_rows)]
    _check_parts(parts, chunks, cfg)
    todo = [i for i in range(len(chunks)) if not (parts / f"{i:05d}.parquet").exists()]
    if not todo:
        return
    sample = _sampler(cfg)
    with RateProgress("av-texts", total=len(rows), enabled=progress, unit="rows") as bar:
        bar.advance(len(rows) - sum(len(chunks[i]) for i in todo))
        for i in todo:
            cols = sample(vecs[chunks[i]].copy(), cfg.seed * 100_003 + i if cfg.temperature > 0 else None)
            table = pa.table({"row": chunks[i].astype(np.int64), **cols})
            with atomic_path(parts / f"{i:05d}.parquet", ".parquet") as tmp:
                pq.write_table(table, tmp)
            bar.advance(len(chunks[i]))


def _sampler(cfg: AVTextsConfig):
    """(vectors, seed) → part columns. best_of > 1 keeps, per row, the sample the AR reconstructs closest to
    the activation, and records its mse_nrm beside the first sample's (an unselected one of the same draw)."""
    import torch

    from nla_audit.av import ActivationVerbalizer

    sampling: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                                "batch_size": cfg.batch_size}
    if cfg.best_of == 1:
        av = ActivationVerbalizer.from_pretrained(cfg.av, dtype=cfg.dtype, device=cfg.device)

        def one(v: np.ndarray, seed: int | None) -> dict:
            expl = av.explain(torch.from_numpy(v), seed=seed, **sampling)
            return {"text": [e.text for e in expl], "ok": [bool(e.ok) for e in expl]}

        return one
    from nla_audit.nla import NLA, best_sample
    from nla_audit.roundtrip import score_reconstructions

    nla, k = NLA.load(cfg.av, cfg.ar, dtype=cfg.dtype, device=None if cfg.device == "auto" else cfg.device), cfg.best_of

    def best(v: np.ndarray, seed: int | None) -> dict:
        t = torch.from_numpy(v)
        expl, pred = nla.sample_explanations(t, k, seed=seed, **sampling)
        mse = score_reconstructions(pred.cpu(), t.repeat_interleave(k, dim=0), nla.ar.meta.require_mse_scale()).mse
        keep = best_sample(mse, torch.tensor([e.ok for e in expl]), k).tolist()
        return {"text": [expl[j].text for j in keep], "ok": [bool(expl[j].ok) for j in keep],
                "mse_nrm": mse[keep].tolist(), "mse_first": mse[::k].tolist()}

    return best


def _check_parts(parts: Path, chunks: list[np.ndarray], cfg: AVTextsConfig) -> None:
    """Parts left by a stopped run must come from the same sampling (checkpoints, decoding, rows), or resuming
    would mix runs; the settings are recorded beside the parts on the first call."""
    import json

    import pyarrow.parquet as pq

    from nla_audit.errors import InputError

    fix = "rerun with that run's settings, or delete " + str(parts)
    settings = {k: getattr(cfg, k) for k in ("av", "ar", "best_of", "temperature", "max_new_tokens", "seed")}
    rec = parts / "settings.json"
    if rec.exists() and json.loads(rec.read_text()) != settings:
        raise InputError(f"{parts} holds samples drawn with other settings ({rec.read_text().strip()})", fix=fix)
    if not rec.exists():
        rec.write_text(json.dumps(settings))
    for p in sorted(parts.glob("*.parquet")):
        i = int(p.stem)
        if i >= len(chunks) or pq.read_table(p, columns=["row"]).column("row").to_pylist() != chunks[i].tolist():
            raise InputError(f"{parts} holds samples of other rows (from a run with other max_rows/seed/chunk_rows)",
                             fix=fix)


def make_av_texts(cfg: AVTextsConfig, progress: bool = True) -> dict[str, float]:
    """Write the SFT parquet(s) of ``cfg.stage`` from the AV's samples; returns row counts (and, with best_of,
    the mean mse_nrm of the kept samples and of the first samples)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.errors import InputError
    from nla_audit.sidecar import read_model_sidecar

    meta = read_dataset_sidecar(cfg.data)
    if (meta.get("split") or {}).get("name") == "test" or meta.get("stage") == "ar_eval":
        raise InputError(f"{cfg.data} is held-out data", expected="a training split (e.g. rl.parquet)",
                         fix="sample the AV on training activations; the test split stays for scoring")
    av_meta = read_model_sidecar(cfg.av, "av")  # a clear error before any work when the AV is not one
    if cfg.ar:
        read_model_sidecar(cfg.ar, "ar")
    vecs, cols = read_vectors(cfg.data, PROVENANCE)
    rows = row_order(len(vecs), cfg.max_rows, cfg.seed)
    out = Path(cfg.out)
    parts = out.with_name(out.name + ".parts")
    _sample_chunks(cfg, vecs, rows, parts, progress)
    got = pa.concat_tables([pq.read_table(p) for p in sorted(parts.glob("*.parquet"))]).to_pydict()
    kept = [(r, t) for r, t, ok in zip(got["row"], got["text"], got["ok"]) if ok]
    base = {k: v for k, v in meta.items() if k not in ("kind", "schema_version", "created_at", "split", "row_count")}
    base.update(prompt_templates={"actor": AV_TEMPLATE, "critic": AR_TEMPLATE}, parent_datasets=[str(cfg.data)],
                created_by="nla_audit.training.av_texts",
                api_summaries={"teacher": "av", "model": str(cfg.av), "temperature": cfg.temperature,
                               "best_of": cfg.best_of, "ar": cfg.ar})
    src = meta.get("dataset_id", Path(cfg.data).stem)
    counts: dict[str, float] = {"sampled": len(got["row"])}
    if cfg.best_of > 1:
        counts.update(mse_kept=float(np.mean(got["mse_nrm"])), mse_first=float(np.mean(got["mse_first"])))
    if cfg.stage == "av_sft":
        _write_stage(out, "av_sft", kept, vecs, cols, {**base, "tokens": av_meta.require_tokens().to_dict()}, src)
        counts["av_sft"] = len(kept)
    else:
        counts.update(_write_ar_stages(cfg, out, kept, vecs, cols, base, src))
    shutil.rmtree(parts)
    return counts


def _write_ar_stages(cfg: AVTextsConfig, out: Path, kept: list, vecs: np.ndarray, cols: dict, base: dict,
                     src: str) -> dict[str, int]:
    """The ar_sft parquet and, from a document-hash share of its rows, the ar_eval one beside it."""
    from nla_audit.errors import InputError

    held = [in_eval(cols["doc_id"][r], cfg.eval_fraction, cfg.seed) for r, _ in kept]
    if all(held) or not any(held):
        raise InputError(f"{len(kept)} tagged samples from {len({cols['doc_id'][r] for r, _ in kept})} documents "
                         f"leave one side of the train/eval split empty", expected="samples from more documents",
                         fix="raise max_rows (or eval_fraction for very few documents)")
    counts = {}
    for stage, path in (("ar_sft", out), ("ar_eval", out.with_name(f"{out.stem}.eval.parquet"))):
        sel = [rt for rt, h in zip(kept, held) if h == (stage == "ar_eval")]
        counts[stage] = _write_stage(path, stage, sel, vecs, cols, base, src)
    return counts


def _write_stage(path: Path, stage: str, sel: list, vecs: np.ndarray, cols: dict, base: dict, src: str) -> int:
    """One parquet + sidecar of (row, text) pairs: AR-SFT columns, or AV-SFT ones (prompt, tagged response)."""
    import pyarrow as pa

    from nla_audit.training.datagen import av_sft_columns

    idx, texts = [r for r, _ in sel], [t for _, t in sel]
    extra = av_sft_columns(texts) if stage == "av_sft" else {
        "prompt": (pa.string(), [AR_TEMPLATE.replace("{explanation}", t) for t in texts]),
        "explanation": (pa.string(), texts)}
    _write(path, vecs[idx], {k: [v[i] for i in idx] for k, v in cols.items()}, extra)
    write_dataset_sidecar(path, dict(base, dataset_id=f"{stage}_av_texts_{src}",
                                     stage=stage, row_count=len(idx)))
    return len(idx)
