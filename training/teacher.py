"""Warm-start explanations for AV/AR SFT.

* ``OfflineTeacher`` — needs no network and no key. **A proxy, not Claude.** It states what a next-token
  predictor must track at the position: the recent context (the last words of the text prefix), the final
  token, and the target model's own top next-token predictions there. Informative by construction (the AR
  can rebuild much of the activation from it), but it carries no abstract features (genre, intent, tone)
  the way the reference's Claude explanations do.
* ``AnthropicTeacher`` — Claude with the reference's instruction (2–3 next-token-prediction features of the
  prefix, ~80–100 words in ``<analysis>`` tags), through ``nla_audit.claude`` (the one Claude client: bounded
  async concurrency, retries with backoff on 429/5xx/timeouts/network errors, and an on-disk cache keyed by
  the request's sha256, so an interrupted run loses nothing and a rerun costs nothing). The key is read from
  ``ANTHROPIC_API_KEY`` and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


# The chat form (a transcript with its template tokens, cut at the position): the same features, plus what the
# conversation makes true there, since at a chat position that is what the model must track.
CHAT_INSTRUCTION = (
    "Below is a chat transcript rendered with the model's chat template (its control tokens included), cut at "
    "the position a language model is reading. Describe, in 3-4 short paragraphs of about 100-120 words in "
    "total, what the model must be tracking there: (1) whose turn it is and which turn, and any system "
    "instruction in force (abridged quote); (2) the user's latest request and its intent and constraints "
    "(abridged quote); (3) what the current speaker has written so far in this turn, if anything; (4) the "
    "final token, its role (content, or which part of the chat template), and the likely next tokens. Do not "
    "mention that the text is cut. Write inside <analysis> ... </analysis>, and always close the tag.\n\n"
    "<begin_transcript>{text}<end_transcript>"
)


def plain_tokens(text: str, tokenizer: Any) -> str:
    """``text`` with every added/special token string (``<|im_end|>``, ``<empty_output>``, …) respelt as
    ``‹im_end›``: in a training target the tokenizer would encode ``<|im_end|>`` as the end-of-turn id itself,
    and the AV would learn to stop writing in the middle of an explanation (or to emit its injection token)."""
    for t in sorted(tokenizer.get_added_vocab(), key=len, reverse=True):
        if t in text:
            text = text.replace(t, "‹" + t.strip("<>|") + "›")
    return text


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

    def explain_documents(self, docs: list[tuple]) -> list[list[str]]:
        """For each (token ids, positions[, chat layout]) → one explanation per position (one forward per
        document). A document with a layout gets the chat form (``chat_teacher.chat_explanation``)."""
        import torch

        from nla_audit.extract import special_token_ids
        from nla_audit.padding import pad_batch
        from nla_audit.training.chat_teacher import chat_explanation

        specials = special_token_ids(self.target.tokenizer)

        tok, model = self.target.tokenizer, self.target.model
        out: list[list[str]] = []
        for i in range(0, len(docs), self.batch_size):
            chunk = docs[i:i + self.batch_size]
            ids, mask = pad_batch([row[:max(pos) + 1] for row, pos, *_ in chunk], tok.pad_token_id or 0)
            with torch.inference_mode():
                logits = model(input_ids=ids.to(self.target.device), attention_mask=mask.to(self.target.device),
                               use_cache=False).logits
            for b, (row, pos, *rest) in enumerate(chunk):
                layout = rest[0] if rest else None
                expl = []
                for p in pos:
                    top = [tok.decode([t]) for t in logits[b, p].float().topk(self.top_k).indices.tolist()]
                    if layout is not None:
                        text = chat_explanation(layout, p, tok, top, specials)
                    else:
                        text = offline_explanation(tok.decode(row[: p + 1], skip_special_tokens=True),
                                                   tok.decode([row[p]]), top)
                    expl.append(plain_tokens(text, tok))
                out.append(expl)
        return out


class AnthropicTeacher:
    """Claude writes the explanation from the text prefix only (never the activation)."""

    name = "anthropic"

    def __init__(self, model: str = "claude-haiku-4-5", cache_dir: str | Path | None = None, concurrency: int = 8,
                 max_retries: int = 6, max_tokens: int = 300, temperature: float = 1.0, client: Any = None) -> None:
        from nla_audit.claude import ClaudeClient, ClaudeConfig
        from nla_audit.paths import cache_dir as root

        self.model, self.concurrency, self.max_retries = model, concurrency, max_retries
        self.max_tokens, self.temperature = max_tokens, temperature
        self.cache = Path(cache_dir or root() / "teacher_cache" / model)
        config = ClaudeConfig(model=model, max_tokens=max_tokens, temperature=temperature, concurrency=concurrency,
                              max_retries=max_retries)
        self.claude = ClaudeClient(config, self.cache, client=client,
                                   alternative="use --teacher offline (no key, no network)")

    def _legacy(self, text: str, kind: str) -> str | None:
        """An explanation cached before ``nla_audit.claude`` (keyed by the text, and the kind for chats), so
        old caches stay free."""
        key = text if kind == "text" else f"{kind}\x00{text}"
        path = self.cache / (hashlib.sha256(key.encode()).hexdigest() + ".json")
        try:
            return json.loads(path.read_text())["explanation"]
        except (OSError, ValueError, KeyError):
            return None

    def explain_texts(self, texts: list[str], kinds: list[str] | None = None) -> list[str | None]:
        """One explanation (or None when dropped) per prefix; ``kinds[i] == "chat"`` marks a rendered transcript,
        which gets ``CHAT_INSTRUCTION`` instead of the text instruction."""
        kinds = kinds or ["text"] * len(texts)
        old = [self._legacy(t, k) for t, k in zip(texts, kinds)]
        todo = [(CHAT_INSTRUCTION if k == "chat" else INSTRUCTION).format(text=t)
                for t, k, o in zip(texts, kinds, old) if o is None]
        fresh = iter(self.claude.complete_many(todo))
        return [o if o is not None else _analysis(next(fresh)) for o in old]


def _analysis(raw: str | None) -> str | None:
    return clean_analysis(raw) if raw is not None else None
