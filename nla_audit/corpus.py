"""Reading corpora into documents: JSONL (text or chat messages), plain text, parquet, JSON transcripts,
folders of those, and Hugging Face datasets when the hub is reachable.

A document is either raw text or a chat transcript (``messages``); tokenization is decided later by
``tokenize_document`` so every reader behaves the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nla_audit.document import Document, pack_texts  # noqa: F401  (Document is re-exported)
from nla_audit.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".text"}
MAX_CHUNK_CHARS = 2000


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not valid UTF-8 (byte {exc.start})",
                         expected="UTF-8 text", fix=f"convert it, e.g. `iconv -f latin1 -t utf-8 {path}`") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", fix="check the path and its permissions") from None


CHAT_ROLES = ("system", "user", "assistant", "tool")  # what HF chat templates know; others render as typed


def check_messages(messages: Any, where: str) -> tuple[dict, ...]:
    """Well-formed chat messages with known roles, or one clear line (a role the template does not know, such
    as "robot", would otherwise be rendered silently as a made-up speaker)."""
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: 'messages' must be a non-empty list",
                         expected='[{"role": "user", "content": "..."}, ...]')
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str):
            raise InputError(f"{where}: malformed message {str(m)[:60]!r}",
                             expected='{"role": ..., "content": "<string>"}')
        if m["role"] not in CHAT_ROLES:
            raise InputError(f"{where}: unknown role {m['role']!r}", expected=" / ".join(CHAT_ROLES),
                             fix="rename the role (e.g. bot → assistant, human → user)")
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


MIX_CHAT_SHARE = 0.5  # the released NLAs' mix: half chat, half text, by tokens


def iter_documents(source: str | Path | None, tokenizer: Any = None, max_length: int = 1024) -> Iterator[Document]:
    """Yield documents from a corpus path, folder, ``default`` (fortunes), ``sharegpt`` (chats), ``mix`` /
    ``mix:<chat share>`` (ShareGPT and fortunes balanced by tokens: needs ``tokenizer``), or
    ``hf:<dataset>[:split[:column]]``."""
    if source is None or str(source) == "default":
        from nla_audit.default_corpus import ensure_default_corpus

        yield from _iter_jsonl(ensure_default_corpus())
        return
    src = str(source)
    if src == "sharegpt":
        from nla_audit.sharegpt import iter_sharegpt

        yield from iter_sharegpt()
        return
    if src == "mix" or src.startswith("mix:"):
        yield from _iter_mix(src, tokenizer, max_length)
        return
    if src.startswith("hf:"):
        from nla_audit.hub import iter_hf_dataset

        for i, rec in enumerate(iter_hf_dataset(src[3:])):
            yield _record_to_doc(rec, f"{src[3:]}:{i}", f"{src} row {i}")
        return
    path = Path(src).expanduser()
    if not path.exists():
        raise InputError(f"corpus {src} does not exist",
                         fix="pass a .jsonl/.json/.parquet/.txt file, a folder, default, sharegpt, mix, or hf:<dataset>")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in files:
            yield from _iter_path(p)
    else:
        yield from _iter_path(path)


COUNT_LIMIT_BYTES = 64 << 20  # counting reads the corpus once more; above this, progress shows no total


def count_documents(source: str | Path | None) -> int | None:
    """How many documents ``iter_documents(source)`` yields, when that is cheap to learn: the default corpus and
    local files or folders up to ``COUNT_LIMIT_BYTES``; None for the rest (ShareGPT, the mix, hub datasets, big
    files). It gives progress bars a total and an ETA when no ``--max-docs`` caps the run."""
    if source is not None and str(source) != "default":
        src = str(source)
        if src in ("sharegpt", "mix") or src.startswith(("mix:", "hf:")):
            return None
        path = Path(src).expanduser()
        if not path.exists():
            return None
        files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
        if sum(f.stat().st_size for f in files) > COUNT_LIMIT_BYTES:
            return None
    try:
        return sum(1 for _ in iter_documents(source))
    except InputError:
        return None  # iter_documents reports the problem itself when extraction reads the corpus


def parse_mix(spec: str) -> float:
    """``mix`` → 0.5, ``mix:0.7`` → 0.7: the chat share of the mix's tokens."""
    _, _, share = spec.partition(":")
    try:
        value = float(share) if share else MIX_CHAT_SHARE
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise InputError(f"corpus {spec!r} is not understood", expected="mix, or mix:<chat share> with 0 < share < 1",
                         fix="e.g. --corpus mix:0.5")
    return value


def mix_by_tokens(sources: Sequence[Iterator[Document]], shares: Sequence[float],
                  count: Any) -> Iterator[Document]:
    """Interleave documents so each source's running token total tracks its share; ``count(doc)`` is the tokens
    a document contributes. Stops when any source runs out, so the shares hold for what was yielded."""
    totals = [0] * len(sources)
    while True:
        i = min(range(len(sources)), key=lambda j: (totals[j] / shares[j], j))
        doc = next(sources[i], None)
        if doc is None:
            return
        totals[i] += count(doc)
        yield doc


def _iter_mix(spec: str, tokenizer: Any, max_length: int) -> Iterator[Document]:
    share = parse_mix(spec)
    if tokenizer is None:
        raise InputError(f"corpus {spec!r} balances chat and text by tokens, so it needs the model's tokenizer",
                         fix="use it through nla-audit extract / train (which pass the tokenizer)")
    from nla_audit.sharegpt import iter_sharegpt

    yield from mix_by_tokens([iter_sharegpt(), iter_documents("default")], [share, 1 - share],
                             lambda d: len(tokenize_document(d, tokenizer, max_length)))


def tokenize_document(doc: Document, tokenizer: Any, max_length: int) -> list[int]:
    """Token ids for a document. Raw text gets the tokenizer's special tokens (BOS where the model has one);
    transcripts are rendered with the model's chat template, encoded with ``add_special_tokens=False``
    (otherwise Llama/Gemma get a second BOS), and cut to ``max_length`` at a turn boundary
    (``nla_audit.chat_layout``)."""
    if doc.messages is not None:
        from nla_audit.chat_layout import chat_layout

        return list(chat_layout(tokenizer, doc.messages, max_length).ids)
    ids = tokenizer(doc.text, add_special_tokens=True)["input_ids"]
    return list(ids[:max_length])
