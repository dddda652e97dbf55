"""Reading corpora into documents: JSONL (text or chat messages), plain text, parquet, JSON transcripts,
folders of those, and Hugging Face datasets when the hub is reachable.

A document is either raw text or a chat transcript (``messages``); tokenization is decided later by
``tokenize_document`` so every reader behaves the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nla_audit.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".text"}
MAX_CHUNK_CHARS = 2000


@dataclass(frozen=True)
class Document:
    """One corpus document: ``text`` for raw text, ``messages`` for a chat transcript."""

    id: str
    text: str | None = None
    messages: tuple[dict, ...] | None = None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not valid UTF-8 (byte {exc.start})",
                         expected="UTF-8 text", fix=f"convert it, e.g. `iconv -f latin1 -t utf-8 {path}`") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", fix="check the path and its permissions") from None


def check_messages(messages: Any, where: str) -> tuple[dict, ...]:
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: 'messages' must be a non-empty list",
                         expected='[{"role": "user", "content": "..."}, ...]')
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str):
            raise InputError(f"{where}: malformed message {str(m)[:60]!r}",
                             expected='{"role": ..., "content": "<string>"}')
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)


def _record_to_doc(rec: Any, default_id: str, where: str) -> Document:
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}",
                         expected='{"id": ..., "text": ...} or {"id": ..., "messages": [...]}')
    doc_id = str(rec.get("id", rec.get("doc_id", default_id)))
    if "messages" in rec:
        return Document(id=doc_id, messages=check_messages(rec["messages"], where))
    text = rec.get("text", rec.get("content"))
    if not isinstance(text, str):
        raise InputError(f"{where}: record has neither 'text' nor 'messages'",
                         expected='{"id": ..., "text": ...} or {"id": ..., "messages": [...]}')
    return Document(id=doc_id, text=text)


def _iter_jsonl(path: Path) -> Iterator[Document]:
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: invalid JSON ({exc.msg})", expected="one JSON object per line") from None
        yield _record_to_doc(rec, f"{path.stem}:{lineno - 1}", f"{path}:{lineno}")


def _iter_json(path: Path) -> Iterator[Document]:
    try:
        obj = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})", expected="a JSON document") from None
    if isinstance(obj, list) and obj and all(isinstance(m, dict) and "role" in m for m in obj):
        yield Document(id=path.stem, messages=check_messages(obj, str(path)))
    elif isinstance(obj, dict) and "messages" in obj:
        yield _record_to_doc(obj, path.stem, str(path))
    elif isinstance(obj, list):
        for i, rec in enumerate(obj):
            yield _record_to_doc(rec, f"{path.stem}:{i}", f"{path}[{i}]")
    else:
        yield _record_to_doc(obj, path.stem, str(path))


def pack_texts(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with blank lines into chunks of at most ~max_chars (a piece is never split)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for p in pieces:
        if current and size + len(p) > max_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(p)
        size += len(p) + 2
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def chunk_paragraphs(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Split long plain text at blank lines into chunks of at most ~max_chars."""
    return pack_texts([p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()], max_chars)


def _iter_text(path: Path) -> Iterator[Document]:
    for i, chunk in enumerate(chunk_paragraphs(_read_text(path))):
        yield Document(id=f"{path.stem}:{i}", text=chunk)


def _iter_parquet(path: Path) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InputError(f"{path} is not a readable parquet file ({exc})", fix="check the file") from None
    cols = set(pf.schema_arrow.names)
    if not cols & {"text", "messages", "content"}:
        raise InputError(f"{path} has no 'text' or 'messages' column (columns: {sorted(cols)})",
                         expected="a 'text' or 'messages' column plus an optional 'id'")
    n = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            yield _record_to_doc(rec, f"{path.stem}:{n}", f"{path} row {n}")
            n += 1


def _iter_path(path: Path) -> Iterator[Document]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _iter_json(path)
    elif suffix == ".parquet":
        yield from _iter_parquet(path)
    elif suffix in TEXT_SUFFIXES or suffix == "":
        yield from _iter_text(path)
    else:
        raise InputError(f"unsupported corpus file type {suffix!r} ({path})",
                         expected=".jsonl, .json, .parquet, .txt/.md or a folder of those")


def iter_documents(source: str | Path | None) -> Iterator[Document]:
    """Yield documents from a corpus path, folder, ``default``, or ``hf:<dataset>[:split[:column]]``."""
    if source is None or str(source) == "default":
        from nla_audit.default_corpus import ensure_default_corpus

        yield from _iter_jsonl(ensure_default_corpus())
        return
    src = str(source)
    if src.startswith("hf:"):
        from nla_audit.hub import iter_hf_dataset

        for i, rec in enumerate(iter_hf_dataset(src[3:])):
            yield _record_to_doc(rec, f"{src[3:]}:{i}", f"{src} row {i}")
        return
    path = Path(src).expanduser()
    if not path.exists():
        raise InputError(f"corpus {src} does not exist",
                         fix="pass a .jsonl/.json/.parquet/.txt file, a folder, 'default', or hf:<dataset>")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in files:
            yield from _iter_path(p)
    else:
        yield from _iter_path(path)


def tokenize_document(doc: Document, tokenizer: Any, max_length: int) -> list[int]:
    """Token ids for a document. Raw text gets the tokenizer's special tokens (BOS where the model has one);
    transcripts are rendered with the model's chat template and encoded with ``add_special_tokens=False``
    (otherwise Llama/Gemma get a second BOS)."""
    if doc.messages is not None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise InputError(f"document {doc.id} is a chat transcript but the tokenizer has no chat template",
                             fix="pass raw text, or use an instruct model with a chat template")
        rendered = tokenizer.apply_chat_template(list(doc.messages), tokenize=False)
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(doc.text, add_special_tokens=True)["input_ids"]
    return list(ids[:max_length])
