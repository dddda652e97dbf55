"""Where each token of a rendered chat transcript comes from: a message's content, or the chat template.

The auditing signal of an NLA sits at template ("control") tokens such as the assistant header, so training
must sample them and reports must score them apart. Any HF chat template works: the transcript is rendered
with the tokenizer's own template, each message's content is located in the rendered string in order, and
every token whose characters overlap a content span belongs to that message; every other token is a control
token. A default system prompt that the template inserts on its own (SmolLM2 does, when a chat has none) is
found by rendering a sentinel system message, so its text counts as content of an *implicit* system message,
not as template.

``render`` and ``chat_ids`` are the one chat encoding (text, or ids without a second BOS) that prompts,
replies, extraction and evals share.

A transcript longer than the budget is cut at a turn boundary (the longest prefix of whole messages that
fits), not mid-message; only a first message that alone is too long is cut mid-text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nla_audit.errors import InputError

_SENTINEL = "\u2063NLA-SENTINEL\u2063"


@dataclass(frozen=True)
class ChatLayout:
    """A rendered chat's token ids and, per token, its message and whether it is template.

    ``message[i]`` is the index (into ``messages``) of the message token i belongs to; for a control token,
    the message whose content comes next (-1 after the last message). ``control[i]`` is True for template
    tokens. ``messages`` are the messages kept after the cut, with an implicit system message first when the
    template inserted one (``implicit: True``).
    """

    ids: tuple[int, ...]
    message: tuple[int, ...]
    control: tuple[bool, ...]
    messages: tuple[dict, ...]
    text: str

    def previous_message(self, pos: int) -> int:
        """For a control token, the message whose content ended before it (-1 before the first)."""
        nxt = self.message[pos]
        return (len(self.messages) - 1) if nxt < 0 else nxt - 1

    def control_positions(self) -> list[int]:
        return [i for i, c in enumerate(self.control) if c]

    def turn_number(self, index: int) -> int:
        """1-based count of ``messages[index]``'s role up to it (the assistant's 2nd reply → 2)."""
        role = self.messages[index]["role"]
        return sum(m["role"] == role for m in self.messages[: index + 1])


def render(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """The one place a chat becomes text: the tokenizer's own chat template, with the assistant header after
    the last message when ``add_generation_prompt`` (what a model reads before it replies).

    AV prompts, target replies, chat layouts and eval items all render here, so the ids a layout labels and
    the ids a model ran on cannot differ by a template option. A tokenizer without a template, or a chat the
    template refuses, is one clear line, not a jinja traceback.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise InputError("a chat transcript needs a tokenizer with a chat template",
                         fix="pass raw text, or use an instruct model with a chat template")
    try:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises TemplateError for chats the template refuses (e.g. roles out of order)
        raise InputError(f"the chat template refused the transcript ({str(exc).splitlines()[0][:120]})",
                         fix="check the roles and their order: alternate user and assistant turns, and drop a "
                             "system prompt the model does not take") from None


def chat_ids(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool = False,
             suffix: str = "") -> list[int]:
    """``render``'s text (then ``suffix``, e.g. a reply's prefill) as token ids, encoded without special tokens:
    the template already wrote BOS, and a second one would shift every position the NLA reads."""
    text = render(tokenizer, messages, add_generation_prompt) + suffix
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _probe(tokenizer: Any, messages: Sequence[dict]) -> str | None:
    """``render`` without the generation prompt, or None when the template refuses (a probe, not an error)."""
    try:
        return render(tokenizer, messages)
    except InputError:
        return None


def implicit_system(tokenizer: Any, rendered: str, first_content_at: int, messages: Sequence[dict]) -> tuple[int, int] | None:
    """The character span of a system prompt the template inserted itself, or None.

    The template's wrapper around a system message (``prefix{content}suffix``) is learnt by rendering a
    sentinel; an inserted prompt is a stretch before the first message that starts with that prefix.
    """
    if not messages or messages[0]["role"] == "system":
        return None
    probe = _probe(tokenizer, [{"role": "system", "content": _SENTINEL}])
    if probe is None:  # a template that refuses a lone system turn cannot insert one
        return None
    prefix, sep, suffix = probe.partition(_SENTINEL)
    if not sep or not prefix:
        return None
    start = rendered.find(prefix, 0, first_content_at)
    if start < 0:
        return None
    lo = start + len(prefix)
    end = rendered.find(suffix, lo, first_content_at) if suffix else -1
    return (lo, end) if end > lo else None


def message_ends(tokenizer: Any, rendered: str, messages: Sequence[dict]) -> list[int] | None:
    """Where each message's rendering ends in ``rendered`` (the length of the rendered first i+1 messages), or
    None when the template is not prefix-consistent (a later message changes what came before)."""
    ends = []
    for i in range(1, len(messages)):
        part = _probe(tokenizer, messages[:i])
        if part is None or not rendered.startswith(part):  # None: a template that must end on a user turn
            return None
        ends.append(len(part))
    return [*ends, len(rendered)]


def content_spans(rendered: str, messages: Sequence[dict], ends: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Each message's content span in the rendered text, searched in order (templates may strip whitespace,
    so the stripped content is tried too); a message not found gets an empty span at the cursor.

    With ``ends`` (``message_ends``) a message's content is the *last* match inside its own rendering, so a
    short message that also occurs in its header (a user who writes "user") is not taken for the header."""
    spans, cursor = [], 0
    for i, m in enumerate(messages):
        stop = ends[i] if ends is not None else len(rendered)
        find = rendered.rfind if ends is not None else rendered.find
        text = m["content"]
        at = find(text, cursor, stop) if text else -1
        if at < 0 and text.strip():
            text = text.strip()
            at = find(text, cursor, stop)
        if at < 0:
            spans.append((cursor, cursor))
            continue
        spans.append((at, at + len(text)))
        cursor = at + len(text)
    return spans


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _fit(tokenizer: Any, messages: list[dict], max_length: int) -> tuple[list[dict], str]:
    """The longest prefix of whole messages whose rendering fits ``max_length`` tokens (at least one message)."""
    rendered = render(tokenizer, messages)
    if len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) <= max_length or len(messages) == 1:
        return messages, rendered
    lo, hi = 1, len(messages) - 1  # the largest k whose first k messages fit; 1 when even one does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        n = len(tokenizer(render(tokenizer, messages[:mid]), add_special_tokens=False)["input_ids"])
        lo, hi = (mid, hi) if n <= max_length else (lo, mid - 1)
    return messages[:lo], render(tokenizer, messages[:lo])


def chat_layout(tokenizer: Any, messages: Sequence[dict], max_length: int) -> ChatLayout:
    """Render, cut at a turn boundary to ``max_length`` tokens, and label every token (module docstring)."""
    kept, rendered = _fit(tokenizer, list(messages), max_length)
    spans = content_spans(rendered, kept, message_ends(tokenizer, rendered, kept))
    msgs = [dict(m) for m in kept]
    first = spans[0][0] if spans else len(rendered)
    sys_span = implicit_system(tokenizer, rendered, first, kept)
    if sys_span is not None:
        msgs.insert(0, {"role": "system", "content": rendered[sys_span[0]:sys_span[1]], "implicit": True})
        spans.insert(0, sys_span)
    ids, offsets = _encode(tokenizer, rendered)
    message, control = [], []
    k = 0  # the first message whose content has not ended before this token
    for s, e in offsets:
        while k < len(spans) and s >= spans[k][1] and spans[k][1] > spans[k][0]:
            k += 1
        while k < len(spans) and spans[k][1] == spans[k][0] and s >= spans[k][0]:
            k += 1  # an empty span (content not found) holds no token
        inside = k < len(spans) and s < spans[k][1] and e > spans[k][0] and e > s
        message.append(k if k < len(spans) else -1)
        control.append(not inside)
    ids, message, control = ids[:max_length], message[:max_length], control[:max_length]
    return ChatLayout(ids=tuple(ids), message=tuple(message), control=tuple(control), messages=tuple(msgs),
                      text=rendered)
