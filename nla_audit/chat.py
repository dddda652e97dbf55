"""Talking to the target model: one assistant reply to a chat, with an optional prefill.

This is the black-box half of an audit (the NLA and the SAE are the white-box half). It lives in the core, not
in ``agents``, so library users and any later CLI or eval sample replies the way the auditor's ``chat`` tool
does; the reply then becomes a transcript the white-box tools read token by token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nla_audit.chat_layout import chat_ids, render
from nla_audit.corpus import check_messages
from nla_audit.errors import InputError
from nla_audit.padding import pad_batch

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Reply:
    """The target's reply; ``finished`` is False when it was cut at ``max_new_tokens`` (so a reader knows the
    model had more to say)."""

    text: str
    n_tokens: int
    finished: bool


def check_chat(messages: Sequence[dict]) -> tuple[dict, ...]:
    """Well-formed messages (``corpus.check_messages``) with known roles, ending on a user turn, or one clear line."""
    msgs = check_messages(list(messages), "chat")
    bad = [m["role"] for m in msgs if m["role"] not in ROLES]
    if bad:
        raise InputError(f"chat has unknown role(s) {bad[:3]}", expected=" / ".join(ROLES))
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
    msgs = check_chat(messages)
    if max_new_tokens < 1 or temperature < 0:
        raise InputError(f"max_new_tokens {max_new_tokens}, temperature {temperature}",
                         expected="max_new_tokens >= 1 and temperature >= 0")
    tok = target.tokenizer
    if getattr(tok, "chat_template", None) is None:
        raise InputError("the target's tokenizer has no chat template", fix="use an instruct model")
    ids = torch.tensor([chat_ids(tok, msgs, add_generation_prompt=True, suffix=prefill)], device=target.device)
    kw: dict[str, Any] = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens,
                          "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    if temperature > 0:
        kw.update(temperature=temperature, top_k=0, top_p=1.0)
    else:
        kw.update(temperature=None, top_k=None, top_p=None)
    cuda = [target.device.index or 0] if target.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, enabled=temperature > 0 and seed is not None):  # caller's RNG untouched
        if temperature > 0 and seed is not None:
            torch.manual_seed(seed)
        out = target.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
    new = out[0, ids.shape[1]:].tolist()
    stop = set(_as_list(getattr(target.model.generation_config, "eos_token_id", None))) | {tok.eos_token_id}
    finished = (bool(new) and new[-1] in stop) or len(new) < max_new_tokens
    return Reply(tok.decode(new, skip_special_tokens=True), len(new), finished)


def render_chat(tokenizer: Any, messages: list[dict]) -> str:
    """The chat with the generation prompt (``chat_layout.render``), under the name benchmark scripts import."""
    return render(tokenizer, messages, add_generation_prompt=True)


def _as_list(x: Any) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


@torch.no_grad()
def replies(target: Any, chats: Sequence[Sequence[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
            seed: int = 0, batch_size: int = 16) -> list[str]:
    """The target's reply to each chat, generated in left-padded batches (probing an organism with dozens of
    prompts one by one would cost a model call per prompt). Sampling is seeded per batch; greedy at 0."""
    tok = target.tokenizer
    if getattr(tok, "chat_template", None) is None:
        raise InputError("the target's tokenizer has no chat template", fix="use an instruct model")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = []
    for start in range(0, len(chats), batch_size):
        rows = [chat_ids(tok, check_chat(c), add_generation_prompt=True) for c in chats[start:start + batch_size]]
        ids, mask = pad_batch(rows, pad, side="left")
        width = ids.shape[1]
        kw: dict[str, Any] = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens, "pad_token_id": pad}
        if temperature > 0:
            kw.update(temperature=temperature, top_k=0, top_p=1.0)
        else:
            kw.update(temperature=None, top_k=None, top_p=None)
        cuda = [target.device.index or 0] if target.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, enabled=temperature > 0):
            torch.manual_seed(seed + start)
            gen = target.model.generate(input_ids=ids.to(target.device), attention_mask=mask.to(target.device), **kw)
        out += [tok.decode(g[width:].tolist(), skip_special_tokens=True).strip() for g in gen]
    return out
