"""Warm-start explanations for AV/AR SFT.

* ``OfflineTeacher`` — needs no network and no key. **A proxy, not Claude.** It states what a next-token
  predictor must track at the position: the recent context (the last words of the text prefix), the final
  token, and the target model's own top next-token predictions there. Informative by construction (the AR
  can rebuild much of the activation from it), but it carries no abstract features (genre, intent, tone)
  the way the reference's Claude explanations do.
* ``AnthropicTeacher`` — Claude via the ``anthropic`` SDK with the reference's instruction (2–3
  next-token-prediction features of the prefix, ~80–100 words in ``<analysis>`` tags), bounded async
  concurrency, retries with backoff on 429/5xx/timeouts, and an on-disk cache keyed by the text's sha256 so
  an interrupted run loses nothing and a rerun costs nothing. The key is read from ``ANTHROPIC_API_KEY``
  and never written anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nla_audit.errors import ConfigError

CONTEXT_WORDS = 14

INSTRUCTION = (
    "A language model must predict what comes right after the text snippet below. List the 2-3 most important "
    "features of the snippet that it would rely on, most important first, each about 10-20 words; inline "
    "textual examples are welcome. Focus on what the model must be 'thinking about' where the text stops, and "
    "do not mention that the text is truncated. Useful feature types: syntactic or structural constraints, "
    "immediate semantic expectations, stylistic or register patterns, narrative or argumentative momentum, "
    "domain or genre signals, repetition or continuation patterns. The LAST feature must describe the very end "
    "of the sequence: the role of the final token, what it belongs to, and what it constrains next. Write about "
    "80-100 words in total inside <analysis> ... </analysis>, and always close the tag.\n\n"
    "<begin_text>{text}<end_text>"
)


def _quote(s: str) -> str:
    return "“" + s.replace("\n", " ⏎ ").strip() + "”"


def offline_explanation(prefix: str, final_token: str, next_tokens: Sequence[str]) -> str:
    """Three paragraphs, separated by blank lines, like the reference's warm-start data."""
    words = prefix.split()
    tail = " ".join(words[-CONTEXT_WORDS:])
    lead = "… " if len(words) > CONTEXT_WORDS else ""
    nexts = ", ".join(_quote(t) for t in next_tokens if t.strip()) or "a new line or sentence"
    return (f"Recent context: {lead}{_quote(tail)}.\n\n"
            f"Final token {_quote(final_token)}, ending the passage above.\n\n"
            f"Likely next tokens: {nexts}.")


def clean_analysis(raw: str) -> str | None:
    """The reference's post-processing: strict tags, list markers and bold removed, ≥ 2 paragraphs."""
    m = re.search(r"<analysis>\s*(.*?)\s*</analysis>", raw, re.DOTALL)
    if not m:
        return None
    lines = []
    for line in m.group(1).splitlines():
        line = re.sub(r"^\s*(?:[-*•+–—]|\(?\d+[.)]|\(?[a-z][.)]|\(?[ivx]+[.)])\s+", "", line)
        line = re.sub(r"\*\*(.+?)\*\*", r"\1", line).rstrip("*_ ").strip()
        if line:
            lines.append(line)
    return "\n\n".join(lines) if len(lines) >= 2 else None


class OfflineTeacher:
    """Explanations from the text prefix plus the target model's top-k next-token predictions."""

    name = "offline-next-token-proxy"

    def __init__(self, target: Any, top_k: int = 3, batch_size: int = 8) -> None:
        self.target, self.top_k, self.batch_size = target, top_k, batch_size

    def explain_documents(self, docs: list[tuple[list[int], list[int]]]) -> list[list[str]]:
        """For each (token ids, positions) → one explanation per position (one forward per document)."""
        import torch

        tok, model = self.target.tokenizer, self.target.model
        out: list[list[str]] = []
        for i in range(0, len(docs), self.batch_size):
            chunk = docs[i:i + self.batch_size]
            width = max(max(p) + 1 for _, p in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, (row, pos) in enumerate(chunk):
                n = max(pos) + 1
                ids[b, :n], mask[b, :n] = torch.tensor(row[:n]), 1
            with torch.inference_mode():
                logits = model(input_ids=ids.to(self.target.device), attention_mask=mask.to(self.target.device),
                               use_cache=False).logits
            for b, (row, pos) in enumerate(chunk):
                expl = []
                for p in pos:
                    top = logits[b, p].float().topk(self.top_k).indices.tolist()
                    expl.append(offline_explanation(tok.decode(row[: p + 1], skip_special_tokens=True),
                                                    tok.decode([row[p]]), [tok.decode([t]) for t in top]))
                out.append(expl)
        return out


class AnthropicTeacher:
    """Claude writes the explanation from the text prefix only (never the activation)."""

    name = "anthropic"

    def __init__(self, model: str = "claude-haiku-4-5", cache_dir: str | Path | None = None, concurrency: int = 8,
                 max_retries: int = 6, max_tokens: int = 300, temperature: float = 1.0) -> None:
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise ConfigError("the anthropic teacher needs ANTHROPIC_API_KEY in the environment",
                              fix="export ANTHROPIC_API_KEY=..., or use --teacher offline (no key, no network)")
        try:
            import anthropic  # noqa: F401
        except ImportError:
            raise ConfigError("the anthropic teacher needs the anthropic package",
                              fix="pip install 'nla_audit[agents]', or use --teacher offline") from None
        from nla_audit.paths import cache_dir as root

        self.model, self.concurrency, self.max_retries = model, concurrency, max_retries
        self.max_tokens, self.temperature = max_tokens, temperature
        self.cache = Path(cache_dir or root() / "teacher_cache" / model)
        self.cache.mkdir(parents=True, exist_ok=True)

    def _cache_path(self, text: str) -> Path:
        return self.cache / (hashlib.sha256(text.encode()).hexdigest() + ".json")

    async def _one(self, client: Any, sem: asyncio.Semaphore, text: str) -> str | None:
        import anthropic

        path = self._cache_path(text)
        if path.exists():
            return json.loads(path.read_text())["explanation"]
        async with sem:
            for attempt in range(self.max_retries + 1):
                try:
                    msg = await client.messages.create(model=self.model, max_tokens=self.max_tokens,
                                                       temperature=self.temperature,
                                                       messages=[{"role": "user", "content": INSTRUCTION.format(text=text)}])
                    break
                except (anthropic.RateLimitError, anthropic.APITimeoutError, anthropic.APIConnectionError,
                        anthropic.InternalServerError):
                    if attempt == self.max_retries:
                        return None
                    await asyncio.sleep(min(60.0, 2 ** attempt + random.random()))
        expl = clean_analysis("".join(getattr(b, "text", "") for b in msg.content))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"explanation": expl, "model": self.model}))
        tmp.replace(path)
        return expl

    async def _all(self, texts: list[str]) -> list[str | None]:
        import anthropic

        client = anthropic.AsyncAnthropic(max_retries=0)
        sem = asyncio.Semaphore(self.concurrency)
        return await asyncio.gather(*(self._one(client, sem, t) for t in texts))

    def explain_texts(self, texts: list[str]) -> list[str | None]:
        """One explanation (or None when dropped) per text prefix."""
        return asyncio.run(self._all(texts))
