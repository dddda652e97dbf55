"""Talking to the target model: one assistant reply to a chat, with an optional prefill.

This is the black-box half of an audit (the NLA and the SAE are the white-box half). It lives in the core so
the CLI, the evals and the agent tools share one sampling path; the reply comes back as a transcript the
white-box tools can then read token by token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nla_audit.errors import InputError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Reply:
    """The target's reply; ``finished`` is False when it was cut at ``max_new_tokens`` (so a reader knows the
    model had more to say)."""

    text: str
    n_tokens: int
    finished: bool


def check_messages(messages: Sequence[dict]) -> list[dict]:
    """A non-empty list of {role, content} with known roles, ending on a user turn, or one clear line."""
    msgs = [dict(m) for m in messages]
    bad = [i for i, m in enumerate(msgs) if m.get("role") not in ROLES or not isinstance(m.get("content"), str)]
    if not msgs or bad:
        raise InputError(f"chat has {len(msgs)} message(s), malformed at {bad[:3]}",
                         expected="a non-empty list of {role: system|user|assistant, content: str}")
    if msgs[-1]["role"] != "user":
        raise InputError(f"the chat ends on a {msgs[-1]['role']!r} turn", expected="a last message from the user",
                         fix="put what the assistant should start with in `prefill`")
    return msgs


@torch.no_grad()
def reply(target: Any, messages: Sequence[dict], prefill: str = "", max_new_tokens: int = 128,
          temperature: float = 0.0, seed: int | None = 0) -> Reply:
    """The target's next assistant turn (without the prefill) to ``messages``.

    ``prefill`` is appended after the chat template's generation prompt, so the model continues a reply that
    starts with it: the standard way auditors steer a model into saying what it would otherwise not.
    Greedy at temperature 0; sampled runs are seeded so a rerun gives the same reply.
    """
    msgs = check_messages(messages)
    if max_new_tokens < 1 or temperature < 0:
        raise InputError(f"max_new_tokens {max_new_tokens}, temperature {temperature}",
                         expected="max_new_tokens >= 1 and temperature >= 0")
    tok = target.tokenizer
    if getattr(tok, "chat_template", None) is None:
        raise InputError("the target's tokenizer has no chat template", fix="use an instruct model")
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + prefill
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]], device=target.device)
    kw: dict[str, Any] = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens,
                          "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    if temperature > 0:
        kw.update(temperature=temperature, top_k=0, top_p=1.0)
        if seed is not None:
            torch.manual_seed(seed)
    else:
        kw.update(temperature=None, top_k=None, top_p=None)
    new = target.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)[0, ids.shape[1]:].tolist()
    stop = set(_as_list(getattr(target.model.generation_config, "eos_token_id", None))) | {tok.eos_token_id}
    finished = (bool(new) and new[-1] in stop) or len(new) < max_new_tokens
    return Reply(tok.decode(new, skip_special_tokens=True), len(new), finished)


def _as_list(x: Any) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]
