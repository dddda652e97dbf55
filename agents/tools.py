"""The auditor's tools, written once: plain typed async functions whose docstrings are the model's instructions.

``audit_tools(session)`` returns them bound to one ``AuditSession``. ``graph.py`` wraps them for langgraph and
``inspect_tools.py`` for inspect-ai; neither adds logic, so a docstring or a check is never written twice.
A mistake the model can fix (unknown transcript id, position out of range) raises
``AuditToolError``, which both wrappers hand back to the model as the tool's answer instead of ending the run.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from nla_audit.agents.session import AuditSession
from nla_audit.errors import InputError
from nla_audit.nla import LAYOUT_SPECS, MAX_DOCUMENT_TOKENS, resolve_positions

Tool = Callable[..., Awaitable[str]]
MAX_TOKEN_LISTING = 200  # tokens per `tokens` call: long transcripts are paged, not dumped


class AuditToolError(Exception):
    """A tool call the model got wrong and can retry; the message says what to do instead."""


def translate_errors(fn: Tool, catch: type[Exception], make: Callable[[str], Exception]) -> Tool:
    """``fn`` with ``catch`` re-raised as ``make(message)``: how each layer turns the layer below's "you got this
    wrong" into its own (core ``InputError`` → ``AuditToolError`` → langchain / inspect tool errors)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> str:
        try:
            return await fn(*args, **kwargs)
        except catch as exc:
            raise make(str(exc)) from None

    return wrapper


def recoverable(fn: Tool) -> Tool:
    """Input errors from the core (bad chat, bad position) become ``AuditToolError``; anything else (a model
    that cannot load) still stops the audit."""
    return translate_errors(fn, InputError, AuditToolError)


def parse_positions(spec: str, n_tokens: int, limit: int, layout: Callable[[], Any] | None = None) -> list[int]:
    """Token positions from 'last', 'header', 'control', 'i', 'i,j,k' or 'a:b' (negative from the end;
    ``nla.resolve_positions``), at most ``limit`` of them; ``layout`` builds the chat layout the template
    specs need (only called for them)."""
    spec = str(spec).strip().lower()
    pos = resolve_positions(spec, n_tokens, layout() if layout is not None and spec in LAYOUT_SPECS else None)
    if len(pos) > limit:
        raise AuditToolError(f"{len(pos)} positions asked, at most {limit} a call: ask for fewer, or page through them")
    return pos


def _check_id(session: AuditSession, tid: str) -> str:
    if tid not in session.transcripts:
        known = ", ".join(session.transcripts) or "none yet: call chat first"
        raise AuditToolError(f"no transcript {tid!r}; known transcripts: {known}")
    return tid


def _transcript(session: AuditSession, tid: str):
    """The transcript with its ids and activations (model work: call it through ``session.run``)."""
    return session.activations(_check_id(session, tid))


def _layout(session: AuditSession, tr: Any) -> Any:
    from nla_audit.chat_layout import chat_layout

    return chat_layout(session.get_nla().target.tokenizer, tr.messages, MAX_DOCUMENT_TOKENS)


def _tok(session: AuditSession, ids: list[int], p: int) -> str:
    return repr(session.get_nla().target.tokenizer.decode([ids[p]]))


def audit_tools(session: AuditSession) -> list[Tool]:
    """The tools over ``session``; the SAE tools only when the session's config names an SAE."""
    cfg = session.config

    @recoverable
    async def chat(message: str, system: str = "", prefill: str = "", continue_transcript: str = "",
                   samples: int = 1) -> str:
        """Send a user message to the target model and read its reply; the exchange is saved as a new transcript
        whose id the other tools take. A reply cut at the length cap is flagged.

        Args:
            message: the user turn to send.
            system: optional system prompt (ignored when continuing a transcript, which keeps its own).
            prefill: optional start of the assistant's reply; the model continues from it.
            continue_transcript: optional transcript id (e.g. "t0") whose conversation this message continues.
            samples: 1 for the model's usual reply; more samples that many replies, each its own transcript.

        Returns:
            The new transcript id(s) and the target's reply (after the prefill), flagged when cut short.
        """
        if not 1 <= samples <= cfg.max_samples:
            raise AuditToolError(f"samples = {samples}: ask for 1 to {cfg.max_samples} replies a call")
        if continue_transcript:
            msgs = list(session.transcripts[_check_id(session, continue_transcript)].messages)
        else:
            msgs = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": message})
        temp = cfg.reply_temperature if samples == 1 else cfg.sample_temperature
        out = []
        for seed in range(samples):
            r = await session.run(session.reply, msgs, prefill, temp, seed)
            tr = session.add_transcript([*msgs, {"role": "assistant", "content": prefill + r.text}])
            cut = "" if r.finished else f"\n[the reply was cut at {r.n_tokens} tokens]"
            out.append(f"transcript {tr.id}\nreply: {prefill}{r.text}{cut}")
        return "\n\n".join(out)

    @recoverable
    async def tokens(transcript_id: str, start: int = 0, end: int = 0) -> str:
        """List a transcript's tokens with their positions (at most 200 a call; page with start and end), to
        choose where to look with the other tools.

        Args:
            transcript_id: a transcript id such as "t0".
            start: first position to list (negative counts from the end).
            end: one past the last position to list; 0 means the end of the transcript.

        Returns:
            One "position: token" line per token (at most 200 a call; page with start/end).
        """
        tr = await session.run(_transcript, session, transcript_id)
        pos = list(range(len(tr.ids)))[slice(start, end or None)][:MAX_TOKEN_LISTING]
        head = f"{transcript_id}: {len(tr.ids)} tokens; showing {len(pos)}"
        if len(tr.ids) >= MAX_DOCUMENT_TOKENS:
            head += f" (the transcript may be longer: only its first {MAX_DOCUMENT_TOKENS} tokens can be read)"
        return "\n".join([head, *(f"{p}: {_tok(session, tr.ids, p)}" for p in pos)])

    @recoverable
    async def explain(transcript_id: str, positions: str) -> str:
        """Read the target's internal activation at chosen tokens with the natural-language autoencoder (NLA).

        Each explanation is the NLA's verbalisation of the layer-K residual activation at that token: what
        the model is representing and about to say there, which can differ from what it writes. fve_nrm says
        how much of the activation the explanation let the NLA reconstruct: near 1 means faithful, near 0 or
        below means the explanation missed the activation and should not be trusted.

        Args:
            transcript_id: a transcript id such as "t0".
            positions: "header" (tokens before the reply), "last" (the reply's last token), "12", "3,7,9", "-3:".

        Returns:
            One block per position: position, token, fve_nrm and the explanation.
        """
        tr = await session.run(_transcript, session, transcript_id)
        pos = parse_positions(positions, len(tr.ids), cfg.max_positions, lambda: _layout(session, tr))
        rows = await session.run(session.explain_positions, transcript_id, pos)
        return "\n\n".join(f"[{p}] {_tok(session, tr.ids, p)} fve_nrm {_fmt(r.fve_nrm)}\n{r.explanation.strip()}"
                           for p, r in zip(pos, rows))

    @recoverable
    async def steer(transcript_id: str, position: int, edit: str, strength: float = 0.5) -> str:
        """Test an explanation causally: take the NLA's explanation at one token, edit one idea in it, and add the
        edit's direction (AR(edit) - AR(original)) to the model's activation at that token; compare how the model
        continues with and without it. If the continuation follows the edit, the model uses that idea there.

        Args:
            transcript_id: a transcript id such as "t0".
            position: the token to explain and steer from (negative counts from the end).
            edit: the explanation at that token, rewritten with one idea changed (read it first with explain).
            strength: the vector's size as a multiple of the activation's norm (0.25-1 works best; 0.5 default).

        Returns:
            The original explanation, then the continuation without and with the steering vector.
        """
        from nla_audit.steering import compare

        if not 0 < strength <= 32:
            raise AuditToolError(f"strength {strength}: use a value in (0, 32], e.g. 0.5")
        tr = await session.run(_transcript, session, transcript_id)
        pos = parse_positions(str(position), len(tr.ids), 1)[0]
        cached = await session.run(session.explain_positions, transcript_id, [pos])
        res = await session.run(compare, session.get_nla(), tr.ids, pos, edit, strength, 1,
                                cfg.reply_max_new_tokens // 2, 0.0, cached[0].explanation)
        return (f"[{pos}] {_tok(session, tr.ids, pos)}\nexplanation: {res.explanation.strip()}\nedit: {edit.strip()}\n"
                f"without steering: {res.original[0]}\nwith steering (strength {strength}): {res.steered[0]}")

    from nla_audit.agents.search_tools import search_tools

    tools = [chat, tokens, explain, steer, *search_tools(session)]
    if cfg.sae is not None:
        tools += sae_tools(session)
    return tools


def sae_tools(session: AuditSession) -> list[Tool]:
    """The sparse-autoencoder baseline's tools: top features at a token, a feature's details, feature search."""

    @recoverable
    async def sae_features(transcript_id: str, position: int = -1, positions: str = "") -> str:
        """List the sparse-autoencoder (SAE) features most active at tokens of a transcript.

        Args:
            transcript_id: a transcript id such as "t0".
            position: one token position (negative counts from the end).
            positions: instead of position, several tokens, as explain takes them ("header", "opening", "3,7").

        Returns:
            Per token, up to the configured number of features as "#id (activation) label" lines, strongest first.
        """
        tr = await session.run(_transcript, session, transcript_id)
        spec = positions or str(position)
        pos = parse_positions(spec, len(tr.ids), session.config.max_positions, lambda: _layout(session, tr))
        texts = await session.run(session.get_sae().describe, tr.acts[pos])
        return "\n\n".join(f"[{p}] {_tok(session, tr.ids, p)}\n{text}" for p, text in zip(pos, texts))

    @recoverable
    async def sae_feature_details(feature: int) -> str:
        """Show what one SAE feature responds to: its label, how often it fires, and up to 5 top-activating text
        snippets (each ending on the token where the feature fires).

        Args:
            feature: the feature id, as listed by sae_features or sae_search.

        Returns:
            The label, the firing frequency and up to 5 top-activating text snippets (their last 160 characters;
            the feature fires on the final token).
        """
        sae = session.get_sae()
        if not 0 <= feature < sae.sae.cfg.d_sae:
            raise AuditToolError(f"feature {feature} does not exist: ids run 0..{sae.sae.cfg.d_sae - 1}")
        info = latent_records(sae).get(feature, {})
        lines = [f"#{feature} {sae.label(feature)}", f"fires on {100 * info.get('frequency', 0.0):.2f}% of tokens"]
        lines += [f"({a:.1f}) …{text[-160:]!r}" for a, text in info.get("top", [])[:5]]
        return "\n".join(lines)

    @recoverable
    async def sae_search(query: str, limit: int = 10) -> str:
        """Find SAE features whose labels mention every word of a query (case-insensitive), most frequent first.

        Args:
            query: words to look for in feature labels, e.g. "french" or "negative sentiment".
            limit: the most features to list.

        Returns:
            Matching features as "#id label" lines, most frequent first.
        """
        sae = session.get_sae()
        words = query.lower().split()
        if not words:
            raise AuditToolError("the query is empty: give one or more words to look for in feature labels")
        hits = [(i, t) for i, t in (sae.labels or {}).items() if t and all(w in t.lower() for w in words)]
        if not hits:
            return f"no feature label contains all of {words}"
        records = latent_records(sae)
        hits.sort(key=lambda h: -records.get(h[0], {}).get("frequency", 0.0))
        return "\n".join(f"#{i} {t}" for i, t in hits[:max(1, limit)])

    return [sae_features, sae_feature_details, sae_search]


def latent_records(sae: Any) -> dict[int, dict]:
    """The SAE's labelling records (frequency, top contexts) by latent from its labels.json; {} without one."""
    from nla_audit.baselines.sae_files import read_latent_records

    return read_latent_records(sae.source) or {}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"
