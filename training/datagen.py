"""``nla-audit datagen``: activation dataset → AV-SFT, AR-SFT and RL parquets (reference schema, §5.4).

Input is a base activation parquet from ``nla-audit extract``. It is split by document (``nla_audit.split``;
existing split files next to it are reused), the two SFT splits get teacher explanations, and the three
training files are written with sidecars carrying the tokens block and both prompt templates. The ``test``
split is never trained on: it is the held-out set of ``benchmarks/fve.py``. ``eval_rows`` of its rows (a seeded
choice) also get teacher explanations, written to ``ar_eval.parquet``: the AR SFT's held-out curve (the AR's
ceiling on teacher text), which only watches the run and never feeds a gradient.

``pool_sft`` departs from the reference's disjoint SFT splits: both SFT parquets then hold the rows of both
splits (AV-SFT rows first). The unpooled SmolLM2 warm start looked data-bound (the AV's loss still falling,
the AR's held-out curve flat after a few passes over one split's ~7k rows), and both splits get teacher text
anyway; the RL and test splits stay separate, so held-out numbers are unaffected.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nla_audit.errors import InputError
from nla_audit.sidecar import (
    AR_TEMPLATE,
    AV_TEMPLATE,
    INJECT_PLACEHOLDER,
    read_dataset_sidecar,
    write_dataset_sidecar,
)
from nla_audit.split import DEFAULT_FRACTIONS, split_dataset
from nla_audit.vectors import read_vectors

PROVENANCE = ["doc_id", "n_raw_tokens", "detokenized_text_truncated", "activation_layer"]


@dataclass(frozen=True)
class DatagenConfig:
    data: str
    out_dir: str
    teacher: str = "offline"  # offline | anthropic
    teacher_model: str = "claude-haiku-4-5"
    seed: int = 42
    max_rows: int | None = None  # per SFT split; None = all
    eval_rows: int = 128  # test-split rows explained for ar_eval.parquet (0 = none)
    pool_sft: bool = False  # both SFT parquets hold the rows of both SFT splits (twice the warm-start data)
    # the offline teacher's target-model forward; kept bf16 on every device (unlike training's "auto") so the
    # teacher's top-3 predictions, and with them the shipped recipe's data, stay as they were made
    dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        from nla_audit.errors import ConfigError

        if self.eval_rows < 0:
            raise ConfigError(f"eval_rows = {self.eval_rows}", expected=">= 0 (0 = no ar_eval.parquet)")


def split_paths(data: Path, seed: int) -> dict[str, Path]:
    paths = {name: data.with_name(f"{data.stem}.{name}.parquet") for name in DEFAULT_FRACTIONS}
    if not all(p.exists() for p in paths.values()):
        split_dataset(data, data.parent, dict(DEFAULT_FRACTIONS), seed)
    return paths


def _rows(path: Path, max_rows: int | None) -> tuple[np.ndarray, dict[str, list]]:
    vecs, cols = read_vectors(path, PROVENANCE)
    if max_rows is not None and len(vecs) > max_rows:
        vecs, cols = vecs[:max_rows], {k: v[:max_rows] for k, v in cols.items()}
    return vecs, cols


def _eval_rows(path: Path, n: int, seed: int) -> tuple[np.ndarray, dict[str, list]]:
    """``n`` rows of the test split, a seeded choice kept in file order (spread over documents, reproducible)."""
    vecs, cols = read_vectors(path, PROVENANCE)
    pick = np.sort(np.random.default_rng(seed).permutation(len(vecs))[:n])
    return vecs[pick], {k: [v[i] for i in pick] for k, v in cols.items()}


def _pooled(sft: dict[str, tuple[np.ndarray, dict]]) -> tuple[np.ndarray, dict[str, list]]:
    """The AV-SFT split's rows followed by the AR-SFT split's (``pool_sft``)."""
    (va, ca), (vr, cr) = sft["av_sft"], sft["ar_sft"]
    return np.concatenate([va, vr]), {k: list(ca[k]) + list(cr[k]) for k in ca}


def _parents(stage: str, pooled: bool) -> tuple[str, ...]:
    """The split files a stage's rows come from (its sidecar's ``parent_datasets``)."""
    if stage == "ar_eval":
        return ("test",)
    return ("av_sft", "ar_sft") if pooled and stage in ("av_sft", "ar_sft") else (stage,)


def made_pooled(meta: dict) -> bool:
    """Whether an SFT parquet's sidecar says it was written with ``pool_sft`` (it names both SFT splits)."""
    return len(meta.get("parent_datasets", [])) > 1


def offline_explanations(meta: dict, needed: dict[str, set[int]], dtype: str) -> dict[tuple[str, int], str]:
    """Re-read the corpus named in the sidecar, so the teacher sees exactly the extracted token ids."""
    from nla_audit.corpus import iter_documents
    from nla_audit.extract import prepare_document
    from nla_audit.models import load_target
    from nla_audit.progress import RateProgress
    from nla_audit.training.teacher import OfflineTeacher

    ext = meta["extraction"]
    target = load_target(ext.get("model_path") or ext["base_model"], dtype=dtype)
    teacher = OfflineTeacher(target)
    out: dict[tuple[str, int], str] = {}
    pending: list[tuple[str, list[int], list[int], Any]] = []

    def flush() -> None:
        results = teacher.explain_documents([(ids, pos, layout) for _, ids, pos, layout in pending])
        for (doc_id, _ids, pos, _layout), expls in zip(pending, results):
            for p, e in zip(pos, expls):
                out[(doc_id, p + 1)] = e
        pending.clear()

    with RateProgress("teacher", total=len(needed)) as bar:
        max_length = int(ext.get("max_length", 1024))
        left = set(needed)
        for doc in iter_documents(ext["corpus"], target.tokenizer, max_length):
            if not left:
                break  # every needed document seen: the rest of a large corpus need not be read
            if doc.id not in left:
                continue
            left.discard(doc.id)
            ids, layout = prepare_document(doc, target.tokenizer, max_length)
            pos = sorted(n - 1 for n in needed[doc.id] if n - 1 < len(ids))
            if pos:
                pending.append((doc.id, ids, pos, layout))
            if len(pending) >= teacher.batch_size:
                bar.advance(len(pending), sum(max(p) for _, _, p, _ in pending))
                flush()
        if pending:
            bar.advance(len(pending))
            flush()
    return out


def chat_prefixes(meta: dict, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """For the (doc id, prefix length) keys of chat documents: the rendered transcript up to it, template
    tokens included (the ``detokenized_text_truncated`` column drops them, and with them who is speaking)."""
    from nla_audit.corpus import iter_documents
    from nla_audit.extract import prepare_document
    from nla_audit.models import load_tokenizer, resolve_model_path

    ext = meta["extraction"]
    tok = load_tokenizer(resolve_model_path(ext.get("model_path") or ext["base_model"]))
    max_length = int(ext.get("max_length", 1024))
    needed: dict[str, set[int]] = defaultdict(set)
    for d, n in keys:
        needed[d].add(int(n))
    out: dict[tuple[str, int], str] = {}
    for doc in iter_documents(ext["corpus"], tok, max_length):
        if doc.id in needed and doc.messages is not None:
            ids, _ = prepare_document(doc, tok, max_length)
            out.update({(doc.id, n): tok.decode(ids[:n]) for n in needed[doc.id]})
    return out


def _explanations(cfg: DatagenConfig, meta: dict, splits: dict[str, tuple[np.ndarray, dict]]) -> dict:
    keys = [(d, n) for _, cols in splits.values() for d, n in zip(cols["doc_id"], cols["n_raw_tokens"])]
    if cfg.teacher == "offline":
        needed: dict[str, set[int]] = defaultdict(set)
        for d, n in keys:
            needed[d].add(int(n))
        return offline_explanations(meta, needed, cfg.dtype)
    if cfg.teacher == "anthropic":
        from nla_audit.training.teacher import AnthropicTeacher

        teacher = AnthropicTeacher(cfg.teacher_model)
        texts = [t for _, cols in splits.values() for t in cols["detokenized_text_truncated"]]
        chats = chat_prefixes(meta, keys)
        kinds = ["chat" if k in chats else "text" for k in keys]
        return dict(zip(keys, teacher.explain_texts([chats.get(k, t) for k, t in zip(keys, texts)], kinds)))
    raise InputError(f"unknown teacher {cfg.teacher!r}", expected="offline or anthropic")


def _write(path: Path, vecs: np.ndarray, cols: dict, extra: dict[str, tuple[Any, list]]) -> None:
    from nla_audit.atomic import atomic_path
    from nla_audit.vectors import VectorWriter

    with atomic_path(path, ".parquet") as tmp:
        w = VectorWriter(tmp, vecs.shape[1], {k: t for k, (t, _) in extra.items()})
        w.write({"activation_vector": vecs, **cols, **{k: v for k, (_, v) in extra.items()}})
        w.close()


def av_prompt_column(n: int) -> tuple[Any, list]:
    """The reference's AV prompt column: one chat message whose injection site is the placeholder."""
    import pyarrow as pa

    msg = [{"role": "user", "content": AV_TEMPLATE.replace("{injection_char}", INJECT_PLACEHOLDER)}]
    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])), [msg] * n


def av_sft_columns(texts: list[str]) -> dict[str, tuple[Any, list]]:
    """AV-SFT extra columns: the prompt and the tagged response the AV learns to write."""
    import pyarrow as pa

    return {"prompt": av_prompt_column(len(texts)),
            "response": (pa.string(), [f"<explanation>\n{t}\n</explanation>" for t in texts])}


def run_datagen(cfg: DatagenConfig) -> dict[str, int]:
    import pyarrow as pa

    from nla_audit.injection import build_token_meta
    from nla_audit.models import load_tokenizer, resolve_model_path
    from nla_audit.training.teacher import plain_tokens

    data = Path(cfg.data)
    meta = read_dataset_sidecar(data)
    paths = split_paths(data, cfg.seed)
    sft = {name: _rows(paths[name], cfg.max_rows) for name in ("av_sft", "ar_sft")}
    if cfg.eval_rows:
        sft["ar_eval"] = _eval_rows(paths["test"], cfg.eval_rows, cfg.seed)
    expl = _explanations(cfg, meta, sft)
    tok = load_tokenizer(resolve_model_path(meta["extraction"].get("model_path") or meta["extraction"]["base_model"]))
    tokens = build_token_meta(tok)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    base = {k: v for k, v in meta.items() if k not in ("kind", "schema_version", "created_at", "split", "row_count")}
    for stage in ("av_sft", "ar_sft", "rl", "ar_eval"):
        if stage == "ar_eval" and stage not in sft:
            continue
        vecs, cols = _pooled(sft) if cfg.pool_sft and stage in ("av_sft", "ar_sft") else \
            sft[stage] if stage in sft else _rows(paths[stage], None)
        if stage in sft:
            texts = [expl.get((d, int(n))) for d, n in zip(cols["doc_id"], cols["n_raw_tokens"])]
            texts = [None if t is None else plain_tokens(t, tok) for t in texts]  # either teacher
            keep = np.array([t is not None for t in texts], dtype=bool)
            vecs, texts = vecs[keep], [t for t in texts if t is not None]
            cols = {k: [x for x, m in zip(v, keep) if m] for k, v in cols.items()}
        if stage == "av_sft":
            extra = av_sft_columns([str(t) for t in texts])
        elif stage in ("ar_sft", "ar_eval"):
            extra = {"prompt": (pa.string(), [AR_TEMPLATE.replace("{explanation}", str(t)) for t in texts]),
                     "explanation": (pa.string(), texts)}
        else:
            extra = {"prompt": av_prompt_column(len(vecs))}
        out = out_dir / f"{stage}.parquet"
        _write(out, vecs, cols, extra)
        side = dict(base, dataset_id=f"{stage}_{meta.get('dataset_id', data.stem)}", stage=stage, row_count=len(vecs),
                    tokens=tokens.to_dict(),
                    prompt_templates={"actor": AV_TEMPLATE, "critic": AR_TEMPLATE},
                    parent_datasets=[str(paths[s]) for s in _parents(stage, cfg.pool_sft)],
                    created_by="nla_audit.training.datagen")
        if stage in sft:
            side["api_summaries"] = {"teacher": cfg.teacher, "model": cfg.teacher_model if cfg.teacher == "anthropic" else None}
        write_dataset_sidecar(out, side)
        counts[stage] = len(vecs)
    return counts
