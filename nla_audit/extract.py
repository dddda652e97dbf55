"""Activation extraction: run a causal LM over a corpus and keep the residual stream after block K.

Layer convention (official_nla.md §2.1): K names the block whose *output* is captured, i.e. HF
``hidden_states[K+1]``. We hook ``layers[K]`` and stop the forward pass there, so blocks after K cost nothing.
Positions are sampled per document with an RNG seeded from ``sha256(f"{seed}|{doc_id}")``, so a document's
rows do not depend on sharding, batching or corpus order.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from nla_audit.atomic import atomic_path, check_writable
from nla_audit.corpus import Document, iter_documents, tokenize_document
from nla_audit.errors import InputError
from nla_audit.models import Target, check_layer, decoder_layers, default_layer, load_target

MIN_POSITION = 50


@dataclass(frozen=True)
class ExtractConfig:
    """What ``nla-audit extract`` does; saved into the dataset sidecar."""

    out: str
    model: str = "default"
    corpus: str = "default"
    layer: int | None = None
    positions_per_doc: int = 10
    all_positions: bool = False
    min_position: int = MIN_POSITION
    seed: int = 42
    max_length: int = 1024
    batch_size: int = 8
    max_docs: int | None = None
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.positions_per_doc < 1:
            raise InputError(f"positions per document is {self.positions_per_doc}", expected="an integer >= 1")
        if self.min_position < 1:
            raise InputError(f"min position is {self.min_position}",
                             expected=">= 1 (position 0 is the attention sink and is never sampled)")
        if self.batch_size < 1 or self.max_length < 2:
            raise InputError("batch size must be >= 1 and max length >= 2")


# ------------------------------------------------------------------------------------------- pure helpers
def doc_rng(seed: int, doc_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{doc_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def eligible_positions(ids: Sequence[int], special_ids: set[int], min_position: int) -> list[int]:
    """Positions >= max(1, min_position) whose token is not special (position 0 is the attention sink)."""
    start = max(1, min_position)
    return [p for p in range(start, len(ids)) if ids[p] not in special_ids]


def sample_positions(ids: Sequence[int], special_ids: set[int], min_position: int, k: int, seed: int,
                     doc_id: str, all_positions: bool = False) -> list[int]:
    """Up to ``k`` eligible positions, sampled without replacement by the document's own RNG, sorted."""
    pool = eligible_positions(ids, special_ids, min_position)
    if all_positions or len(pool) <= k:
        return pool
    picked = doc_rng(seed, doc_id).choice(len(pool), size=k, replace=False)
    return sorted(pool[i] for i in picked)


# ------------------------------------------------------------------------------------------- forward
class _StopForward(Exception):
    pass


@contextlib.contextmanager
def capture_block_output(model: Any, layer: int, stop: bool = True) -> Iterator[dict]:
    """Hook ``layers[layer]``; its output lands in ``box['out']``. With ``stop``, abort the forward there."""
    box: dict[str, Any] = {}

    def hook(_module, _inputs, output):
        box["out"] = output[0] if isinstance(output, tuple) else output  # transformers 4.x returns tuples
        if stop:
            raise _StopForward

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def block_outputs(model: Any, layer: int, batch_ids: list[list[int]], pad_id: int) -> Any:
    """Right-padded batched forward up to block ``layer``; returns float32 [B, T, d] on the CPU."""
    import torch

    device = next(model.parameters()).device
    width = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, row in enumerate(batch_ids):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    with torch.inference_mode(), capture_block_output(model, layer) as box:
        try:
            model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
        except _StopForward:
            pass
    return box["out"].float().cpu()


def text_activations(target: Target, layer: int, ids: list[int]) -> Any:
    """All positions' block-K outputs for one token sequence: float32 [T, d]."""
    pad = target.tokenizer.pad_token_id if target.tokenizer.pad_token_id is not None else 0
    return block_outputs(target.model, layer, [ids], pad)[0]


def special_token_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            ids.add(int(value))
    return ids


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash that changes when the vocabulary or special tokens change (dataset/model mismatch checks)."""
    probe = "The quick brown fox, naïvely — 12345 <tag> 你好"
    payload = repr((len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer(probe, add_special_tokens=False)["input_ids"]))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- driver
@dataclass
class ExtractResult:
    out: str
    rows: int
    docs: int
    docs_used: int
    tokens: int
    seconds: float
    layer: int
    d_model: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def _prepared_docs(docs: Iterator[Document], tok: Any, cfg: ExtractConfig) -> Iterator[tuple[Document, list[int]]]:
    for doc in docs:
        yield doc, tokenize_document(doc, tok, cfg.max_length)


def _chunks(it: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(it, size)):
        yield chunk


def extract_activations(cfg: ExtractConfig, target: Target | None = None, progress: bool = True) -> ExtractResult:
    """Extract block-K outputs at sampled positions of every document into ``cfg.out`` (+ its sidecar)."""
    from nla_audit.progress import RateProgress
    from nla_audit.sidecar import write_dataset_sidecar

    check_writable(cfg.out)
    docs_iter = iter_documents(cfg.corpus)
    if cfg.max_docs is not None:
        docs_iter = islice(docs_iter, cfg.max_docs)
    first = next(docs_iter, None)  # fail on an empty corpus before loading a model
    if first is None:
        raise InputError(f"corpus {cfg.corpus} holds no documents", expected="at least one document")
    target = target or load_target(cfg.model, dtype=cfg.dtype, device=cfg.device)
    layer = check_layer(default_layer(target.num_layers) if cfg.layer is None else cfg.layer, target.num_layers)
    tok = target.tokenizer
    specials = special_token_ids(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    n_docs = n_used = n_tokens = 0
    start = time.perf_counter()
    from nla_audit.vectors import VectorWriter

    with atomic_path(cfg.out, ".parquet") as tmp, RateProgress("extract", enabled=progress) as bar:
        writer = VectorWriter(tmp, target.d_model)
        all_docs = _prepared_docs(_chain(first, docs_iter), tok, cfg)
        # Sort a window of documents by length so batches carry little padding; output order stays deterministic.
        for window in _chunks(all_docs, cfg.batch_size * 16):
            window.sort(key=lambda x: len(x[1]))
            for batch in _chunks(iter(window), cfg.batch_size):
                n_docs += len(batch)
                picks = [sample_positions(ids, specials, cfg.min_position, cfg.positions_per_doc, cfg.seed, doc.id,
                                          cfg.all_positions) for doc, ids in batch]
                keep = [(d, ids, p) for (d, ids), p in zip(batch, picks) if p]
                batch_tokens = sum(len(ids) for _, ids in batch)
                if keep:
                    hidden = block_outputs(target.model, layer, [ids[: max(p) + 1] for _, ids, p in keep], pad)
                    writer.write(_rows(keep, hidden, tok, layer))
                    n_used += len(keep)
                n_tokens += batch_tokens
                bar.advance(len(batch), batch_tokens)
        writer.close()
        if writer.rows == 0:
            raise InputError(f"no document in {cfg.corpus} has a usable position >= {cfg.min_position}",
                             expected=f"documents longer than {cfg.min_position} tokens",
                             fix="lower --min-position or use longer documents")
        result = ExtractResult(out=cfg.out, rows=writer.rows, docs=n_docs, docs_used=n_used, tokens=n_tokens,
                               seconds=time.perf_counter() - start, layer=layer, d_model=target.d_model)
    write_dataset_sidecar(cfg.out, _sidecar_meta(cfg, target, result))
    return result


def _chain(first: Document, rest: Iterator[Document]) -> Iterator[Document]:
    yield first
    yield from rest


def _rows(keep: list, hidden: Any, tok: Any, layer: int) -> dict[str, list]:
    cols: dict[str, list] = {k: [] for k in ("activation_vector", "doc_id", "n_raw_tokens",
                                              "detokenized_text_truncated", "activation_layer")}
    for b, (doc, ids, positions) in enumerate(keep):
        for p in positions:
            cols["activation_vector"].append(hidden[b, p].numpy())
            cols["doc_id"].append(doc.id)
            cols["n_raw_tokens"].append(p + 1)
            cols["detokenized_text_truncated"].append(tok.decode(ids[: p + 1], skip_special_tokens=True))
            cols["activation_layer"].append(layer)
    cols["activation_vector"] = np.stack(cols["activation_vector"])
    return cols


def _sidecar_meta(cfg: ExtractConfig, target: Target, res: ExtractResult) -> dict:
    short = target.name.rsplit("/", 1)[-1]
    digest = hashlib.sha256(repr(asdict(cfg)).encode()).hexdigest()[:8]
    return {
        "dataset_id": f"base_{short}_L{res.layer}_{digest}",
        "stage": "base",
        "row_count": res.rows,
        "extraction": {
            "base_model": target.name,
            "model_path": target.path,
            "d_model": target.d_model,
            "layer_index": res.layer,
            "hidden_states_index": res.layer + 1,
            "norm": "none",
            "corpus": str(cfg.corpus),
            "positions_per_doc": "all" if cfg.all_positions else cfg.positions_per_doc,
            "min_position": cfg.min_position,
            "seed": cfg.seed,
            "max_length": cfg.max_length,
            "tokenizer_fingerprint": tokenizer_fingerprint(target.tokenizer),
            "documents_seen": res.docs,
            "documents_used": res.docs_used,
        },
        "created_by": "nla_audit.extract",
    }
