"""Putting one activation vector into the AV's prompt in place of one token embedding.

The AV prompt contains a rare *injection token* inside ``<concept>…</concept>``. A position is a valid site
only if it holds that token *and* its left/right neighbours are the ids recorded in the sidecar (so template
drift is caught, as in the reference implementation). The vector, rescaled to ``injection_scale``, replaces
the embedding layer's *output* row there — after any architecture embed scale (Gemma's ×√d), which therefore
never applies to the injected row. One code path does this for SFT, RL scoring and generation: a forward hook on
the input-embedding module that scans the real ``input_ids`` it receives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from nla_audit.chat_layout import chat_ids
from nla_audit.errors import InjectionError, SidecarError
from nla_audit.metrics import normalize
from nla_audit.sidecar import AV_TEMPLATE, TokenMeta

CJK_AUTOPICK_RANGE = (0x3200, 0x33FF)
SCALED_EMBED_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text", "t5"})


def embed_scale(config: Any) -> float:
    """√d for Gemma/T5-style models that multiply token embeddings by √d, else 1.0 (for hand-built embeds)."""
    cfg = getattr(config, "text_config", None) or config
    return float(cfg.hidden_size) ** 0.5 if cfg.model_type in SCALED_EMBED_TYPES else 1.0


def _single_id(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def pick_injection_token(tokenizer: Any) -> tuple[str, int, str]:
    """Deterministic choice of the injection character.

    1. The reference auto-pick: the first code point in U+3200–U+33FF that encodes to exactly one id.
    2. Fallback (tokenizers with none there, e.g. SmolLM2's 49k vocab): the *highest-id* added token that is
       not a special token (not BOS/EOS/PAD/UNK or chat markers), is not UNK, and round-trips from its text
       to exactly its own id. For SmolLM2 this is ``<empty_output>`` (id 16).
    """
    unk = tokenizer.unk_token_id
    for cp in range(CJK_AUTOPICK_RANGE[0], CJK_AUTOPICK_RANGE[1] + 1):
        tid = _single_id(tokenizer, chr(cp))
        if tid is not None and tid != unk:
            return chr(cp), tid, "cjk-autopick"
    specials = set(tokenizer.all_special_tokens)
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    for tid in sorted(added, reverse=True):
        text = added[tid].content
        if text in specials or tid == unk:
            continue
        if _single_id(tokenizer, text) == tid:
            return text, tid, "added-token-fallback"
    raise SidecarError("no injection character found (no single-token char in U+3200–U+33FF, no usable added token)",
                       fix="pass a rare single-token string explicitly (--injection-char)")


def av_prompt_ids(tokenizer: Any, template: str, injection_char: str) -> list[int]:
    """The canonical AV prompt: one user turn, the model's own chat template with a generation prompt,
    rendered to text and encoded with ``add_special_tokens=False`` (no second BOS; ``chat_layout.chat_ids``)."""
    content = template.replace("{injection_char}", injection_char).replace("<INJECT>", injection_char)
    return chat_ids(tokenizer, [{"role": "user", "content": content}], add_generation_prompt=True)


def build_token_meta(tokenizer: Any, template: str = AV_TEMPLATE, injection_char: str | None = None,
                     ar_template: str | None = None) -> TokenMeta:
    """Compute the sidecar ``tokens`` block for a tokenizer (injection id, neighbours, AR suffix ids)."""
    from nla_audit.sidecar import AR_TEMPLATE

    if injection_char is None:
        injection_char, tid, source = pick_injection_token(tokenizer)
    else:
        single = _single_id(tokenizer, injection_char)
        if single is None:
            raise SidecarError(f"injection char {injection_char!r} does not encode to exactly one token",
                               fix="choose a rare string that is a single token")
        tid, source = single, "manual"
    ids = av_prompt_ids(tokenizer, template, injection_char)
    where = [i for i, t in enumerate(ids) if t == tid]
    if len(where) != 1 or where[0] in (0, len(ids) - 1):
        raise SidecarError(f"injection token {injection_char!r} occurs {len(where)} times in the AV prompt",
                           expected="exactly once, not first or last")
    p = where[0]
    suffix_text = (ar_template or AR_TEMPLATE).split("{explanation}", 1)[1]
    suffix = tokenizer(suffix_text, add_special_tokens=False)["input_ids"][1:]  # 1st may merge with the text (BPE)
    return TokenMeta(injection_char=injection_char, injection_token_id=tid, injection_left_neighbor_id=ids[p - 1],
                     injection_right_neighbor_id=ids[p + 1], critic_suffix_ids=tuple(suffix),
                     injection_char_source=source)


def check_tokens(tokenizer: Any, tokens: TokenMeta, template: str, where: str) -> None:
    """Re-derive the token facts from the live tokenizer and fail loudly on any drift."""
    if _single_id(tokenizer, tokens.injection_char) != tokens.injection_token_id:
        got = tokenizer.encode(tokens.injection_char, add_special_tokens=False)
        raise SidecarError(f"{where}: injection char {tokens.injection_char!r} encodes to {got} with this tokenizer",
                           expected=f"[{tokens.injection_token_id}]",
                           fix="the sidecar belongs to another tokenizer; load the matching base model")
    if tokens.injection_token_id == tokenizer.unk_token_id:
        raise SidecarError(f"{where}: injection token is the UNK token", fix="pick another injection char")
    live = build_token_meta(tokenizer, template, tokens.injection_char)
    if (live.injection_left_neighbor_id, live.injection_right_neighbor_id) != (
            tokens.injection_left_neighbor_id, tokens.injection_right_neighbor_id):
        raise SidecarError(
            f"{where}: template drift — neighbours of the injection token are "
            f"({live.injection_left_neighbor_id}, {live.injection_right_neighbor_id}) with this tokenizer/template",
            expected=f"({tokens.injection_left_neighbor_id}, {tokens.injection_right_neighbor_id}) from the sidecar",
            fix="use the AV template and tokenizer the NLA was trained with")


def find_injection_sites(ids: torch.Tensor, tokens: TokenMeta) -> torch.Tensor:
    """[n, 2] (row, position) of valid sites in row-major order; first/last positions never match."""
    if ids.dim() != 2 or ids.shape[1] < 3:
        return torch.zeros((0, 2), dtype=torch.long)
    mid = ids[:, 1:-1] == tokens.injection_token_id
    left = ids[:, :-2] == tokens.injection_left_neighbor_id
    right = ids[:, 2:] == tokens.injection_right_neighbor_id
    rows, cols = torch.nonzero(mid & left & right, as_tuple=True)
    return torch.stack([rows, cols + 1], dim=1)


def inject_rows(embeds: torch.Tensor, sites: torch.Tensor, vectors: torch.Tensor, injection_scale: float) -> torch.Tensor:
    """Return a copy of ``embeds`` whose i-th site row is ``normalize(vectors[i], injection_scale)``.
    Normalisation runs in fp32; the cast to the model dtype happens last (bf16 is coarse at large scales)."""
    if sites.shape[0] != vectors.shape[0]:
        raise InjectionError(f"found {sites.shape[0]} injection sites for {vectors.shape[0]} vectors",
                             expected="exactly one site per vector",
                             fix="check the AV template/tokenizer against the sidecar (template drift)")
    out = embeds.clone()
    v = normalize(vectors.to(embeds.device), injection_scale).to(embeds.dtype)
    out[sites[:, 0], sites[:, 1]] = v
    return out


@contextlib.contextmanager
def injecting(model: Any, tokens: TokenMeta, vectors: torch.Tensor, injection_scale: float) -> Iterator[None]:
    """While active, every forward whose ``input_ids`` are longer than one token gets the vectors injected.

    Single-token forwards (generation decode steps) pass through untouched; every longer forward must hold
    exactly ``len(vectors)`` valid sites, or an ``InjectionError`` is raised.
    """
    emb = model.get_input_embeddings()

    def hook(_module, inputs, output):
        ids = inputs[0]
        if ids.dim() != 2 or ids.shape[1] <= 1:
            return output
        return inject_rows(output, find_injection_sites(ids, tokens).to(output.device), vectors, injection_scale)

    handle = emb.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
