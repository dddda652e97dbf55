"""A corpus document, on its own so every reader (``corpus``, ``sharegpt``, ``default_corpus``) can make one
without importing the module that dispatches between them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """One corpus document: ``text`` for raw text, ``messages`` for a chat transcript."""

    id: str
    text: str | None = None
    messages: tuple[dict, ...] | None = None


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
