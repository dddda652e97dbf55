"""Activation extraction: run a causal LM over a corpus and keep the residual stream after block K.

Layer convention (the reference code's): K names the block whose *output* is captured, i.e. HF
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
from typing import Any

import numpy as np

from nla_audit.atomic import atomic_path, check_writable
from nla_audit.corpus import Document, count_documents, iter_documents, tokenize_document
from nla_audit.errors import InputError
from nla_audit.models import Target, check_layer, decoder_layers, default_layer, load_target

MIN_POSITION = 50
CONTROL_SHARE = 0.25


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
    # chat transcripts: the share of a document's positions drawn from chat-template (control) tokens; the rest
    # are content tokens spread over every turn. min_position does not apply to chats (it would drop early turns)
    control_share: float = CONTROL_SHARE

    def __post_init__(self) -> None:
        if not 0 <= self.control_share <= 1:
            raise InputError(f"control share is {self.control_share}",
                             expected="a fraction in [0, 1] of a chat's positions taken at template tokens")
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


def sample_chat_positions(layout: Any, k: int, control_share: float, seed: int, doc_id: str,
                          all_positions: bool = False) -> list[int]:
    """Up to ``k`` positions of a chat: ``round(k · control_share)`` at template tokens (special ones included:
    ``<|im_start|>`` and ``<|im_end|>`` are where the auditing signal sits), the rest at content tokens with
    one in each message first (in a random order of messages), then anywhere. Position 0 is never taken.
    When one pool runs short, the other fills the gap."""
    control = [p for p in layout.control_positions() if p >= 1]
    content = [p for p in range(1, len(layout.ids)) if not layout.control[p]]
    if all_positions or len(control) + len(content) <= k:
        return sorted(control + content)
    rng = doc_rng(seed, doc_id)
    n_control = min(len(control), round(k * control_share))
    n_content = min(len(content), k - n_control)
    n_control = min(len(control), k - n_content)
    picked = [control[i] for i in rng.choice(len(control), size=n_control, replace=False)] if n_control else []
    by_message: dict[int, list[int]] = {}
    for p in content:
        by_message.setdefault(layout.message[p], []).append(p)
    first = []
    for m in rng.permutation(sorted(by_message)).tolist()[:n_content]:
        pool = by_message[m]
        first.append(pool[int(rng.integers(len(pool)))])
    rest = sorted(set(content) - set(first))
    more = n_content - len(first)
    if more > 0:
        first += [rest[i] for i in rng.choice(len(rest), size=more, replace=False)]
    return sorted(picked + first)


def position_kinds(layout: Any, positions: Sequence[int]) -> list[str]:
    """``control`` or ``content`` per chat position; text documents are all ``text``."""
    if layout is None:
        return ["text"] * len(positions)
    return ["control" if layout.control[p] else "content" for p in positions]


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

    from nla_audit.padding import pad_batch

    device = next(model.parameters()).device
    ids, mask = pad_batch(batch_ids, pad_id)
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


def prepare_document(doc: Document, tok: Any, max_length: int) -> tuple[list[int], Any]:
    """(token ids, chat layout or None): one encoding for extraction, the teacher and benchmarks alike."""
    if doc.messages is None:
        return tokenize_document(doc, tok, max_length), None
    from nla_audit.chat_layout import chat_layout

    layout = chat_layout(tok, doc.messages, max_length)
    return list(layout.ids), layout


def pick_positions(ids: list[int], layout: Any, cfg: ExtractConfig, specials: set[int], doc_id: str) -> list[int]:
    """The extraction rule for one document: chats by ``sample_chat_positions``, text by ``sample_positions``."""
    if layout is not None:
        return sample_chat_positions(layout, cfg.positions_per_doc, cfg.control_share, cfg.seed, doc_id,
                                     cfg.all_positions)
    return sample_positions(ids, specials, cfg.min_position, cfg.positions_per_doc, cfg.seed, doc_id,
                            cfg.all_positions)


def _prepared_docs(docs: Iterator[Document], tok: Any, cfg: ExtractConfig) -> Iterator[tuple[Document, list[int], Any]]:
    for doc in docs:
        ids, layout = prepare_document(doc, tok, cfg.max_length)
        yield doc, ids, layout


def _chunks(it: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(it, size)):
        yield chunk


def extract_activations(cfg: ExtractConfig, target: Target | None = None, progress: bool = True) -> ExtractResult:
    """Extract block-K outputs at sampled positions of every document into ``cfg.out`` (+ its sidecar)."""
    from nla_audit.progress import RateProgress
    from nla_audit.sidecar import write_dataset_sidecar

    check_writable(cfg.out)
    tokenizer = target.tokenizer if target is not None else None
    if tokenizer is None and corpus_needs_tokenizer(cfg.corpus):
        from nla_audit.models import load_tokenizer, resolve_model_path

        tokenizer = load_tokenizer(resolve_model_path(cfg.model))
    docs_iter = iter_documents(cfg.corpus, tokenizer, cfg.max_length)
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
    import pyarrow as pa

    from nla_audit.vectors import VectorWriter

    total = count_documents(cfg.corpus) if progress else None
    total = cfg.max_docs if total is None else min(total, cfg.max_docs or total)
    with atomic_path(cfg.out, ".parquet") as tmp, RateProgress("extract", total=total, enabled=progress) as bar:
        writer = VectorWriter(tmp, target.d_model, {"position_kind": pa.string()})
        all_docs = _prepared_docs(_chain(first, docs_iter), tok, cfg)
        # Sort a window of documents by length so batches carry little padding; output order stays deterministic.
        for window in _chunks(all_docs, cfg.batch_size * 16):
            window.sort(key=lambda x: len(x[1]))
            for batch in _chunks(iter(window), cfg.batch_size):
                n_docs += len(batch)
                picks = [pick_positions(ids, layout, cfg, specials, doc.id) for doc, ids, layout in batch]
                keep = [(d, ids, p, lay) for (d, ids, lay), p in zip(batch, picks) if p]
                batch_tokens = sum(len(ids) for _, ids, _ in batch)
                if keep:
                    hidden = block_outputs(target.model, layer, [ids[: max(p) + 1] for _, ids, p, _ in keep], pad)
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


def corpus_needs_tokenizer(corpus: str) -> bool:
    """Corpus specs whose documents depend on the model's tokenizer (the token-balanced mix)."""
    return str(corpus) == "mix" or str(corpus).startswith("mix:")


def position_rule(cfg: ExtractConfig) -> dict:
    """How positions were chosen, for the sidecar: a reader of the data can tell chat from text rules."""
    return {"text": f"positions >= {cfg.min_position} whose token is not special",
            "chat": f"{cfg.control_share:g} of a chat's positions at chat-template tokens (special ones included), "
                    "the rest at content tokens, at least one per message first; any position >= 1",
            "control_share": cfg.control_share, "per_document": "all" if cfg.all_positions else cfg.positions_per_doc}


def _chain(first: Document, rest: Iterator[Document]) -> Iterator[Document]:
    yield first
    yield from rest


def _rows(keep: list, hidden: Any, tok: Any, layer: int) -> dict[str, list]:
    cols: dict[str, list] = {k: [] for k in ("activation_vector", "doc_id", "n_raw_tokens",
                                              "detokenized_text_truncated", "activation_layer", "position_kind")}
    for b, (doc, ids, positions, layout) in enumerate(keep):
        cols["position_kind"] += position_kinds(layout, positions)
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
            "position_rule": position_rule(cfg),
            "seed": cfg.seed,
            "max_length": cfg.max_length,
            "tokenizer_fingerprint": tokenizer_fingerprint(target.tokenizer),
            "documents_seen": res.docs,
            "documents_used": res.docs_used,
        },
        "created_by": "nla_audit.extract",
    }
