"""What an audit's tools share: the loaded NLA, its target, an optional SAE, and the transcripts so far.

The tools (``tools.py``) read and write only this object, so the same tool functions serve a langgraph
auditor, an inspect solver or a notebook. Models load on first use: an auditor that never asks for SAE
features never loads the SAE.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nla_audit.corpus import Document
from nla_audit.errors import InputError
from nla_audit.nla import load_compatible_target as load_audit_target  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class AuditConfig:
    """How the tools run. ``av``/``ar`` None = the shipped NLA; ``sae`` None = no SAE tools, 'default' = the
    shipped SAE."""

    av: str | None = None
    ar: str | None = None
    sae: str | None = None
    device: str | None = None
    explain_max_new_tokens: int = 96  # per explanation; the shipped AV's answers end well before this
    explain_temperature: float = 0.0  # greedy: the same question gets the same explanation
    reply_max_new_tokens: int = 160
    reply_temperature: float = 0.0
    max_positions: int = 12  # explanations per tool call: bounds one call's cost (2-5 s each on a 2-core CPU)
    sae_top_n: int = 8
    max_samples: int = 8  # replies per `chat` call with samples > 1
    sample_temperature: float = 1.0  # the temperature of those samples (a single reply uses reply_temperature)
    search_max_tokens: int = 256  # nla_search explains every position: transcripts longer than this are refused
    training_data: str | None = None  # a corpus the auditor may search (search_training_data); None = no access
    target: str | None = None  # the model under audit (a folder, hub id or organism:NAME); None = the NLA's base

    def __post_init__(self) -> None:
        if self.max_positions < 1 or self.sae_top_n < 1 or self.explain_max_new_tokens < 1 or self.reply_max_new_tokens < 1:
            raise InputError("max_positions, sae_top_n and the max_new_tokens settings must be >= 1")
        if self.explain_temperature < 0 or self.reply_temperature < 0 or self.sample_temperature <= 0:
            raise InputError("temperatures must be >= 0 (sample_temperature > 0)")
        if self.max_samples < 1 or self.search_max_tokens < 2:
            raise InputError("max_samples must be >= 1 and search_max_tokens >= 2")


@dataclass
class Transcript:
    """A chat the auditor can inspect: its messages and, once computed, its token ids and activations."""

    id: str
    messages: tuple[dict, ...]
    ids: list[int] | None = None
    acts: Any = None  # float32 [T, d] block-K outputs


@dataclass
class AuditSession:
    """The mutable state behind the tools: loaded models and the transcripts by id (``t0``, ``t1``, ...).

    One session serves one audit: concurrent audits (inspect samples, say) each need their own. Model work
    goes through ``run``, one call at a time on a single worker thread, so tool calls a model makes in
    parallel neither load a model twice nor interleave seeded generation, and the event loop stays free.
    """

    config: AuditConfig = field(default_factory=AuditConfig)
    nla: Any = None
    sae: Any = None
    transcripts: dict[str, Transcript] = field(default_factory=dict)
    explained: dict[str, dict[int, Any]] = field(default_factory=dict)  # transcript id → position → explanation
    memo: dict = field(default_factory=dict)  # (config key, messages[, position]) → activations / explanation;
    # sessions given one dict share it (the root-cause task's conditions read the same probes of one organism)
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "nla-audit-tools"), repr=False)

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the session's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, lambda: fn(*args, **kwargs))

    def load(self, progress: bool = False) -> AuditSession:
        """Load the NLA, its target and the SAE (if any) now, so a model that cannot load stops an audit before
        the auditor spends anything, instead of failing inside a tool call. ``progress``: a bar on stderr (on a
        terminal) that names each model as it lands: loading takes ~20 s on a CPU."""
        from nla_audit.progress import RateProgress

        steps = [("NLA", self.get_nla), ("target", lambda: self.get_nla().target)]  # the target loads lazily
        steps += [("SAE", self.get_sae)] if self.config.sae is not None else []
        with RateProgress("loading models", total=len(steps), enabled=progress, unit="models") as bar:
            for name, step in steps:
                step()
                bar.advance(1, loaded=name)
        return self

    def get_nla(self) -> Any:
        if self.nla is None:
            from nla_audit.nla import NLA

            nla = NLA.load(self.config.av, self.config.ar, device=self.config.device)
            if self.config.target is not None:
                nla._target = load_audit_target(self.config.target, nla)
            self.nla = nla
        return self.nla

    def get_sae(self) -> Any:
        """The SAE explainer, checked to read the NLA's site; None when the audit has no SAE."""
        if self.sae is None and self.config.sae is not None:
            from nla_audit.baselines.sae import SAEExplainer
            from nla_audit.site import Site, check_same_site

            sae = SAEExplainer.from_dir(self.config.sae, top_n=self.config.sae_top_n)
            nla = self.get_nla()
            check_same_site(sae, Site(nla.base_model, nla.layer, nla.av.d_model))
            self.sae = sae
        return self.sae

    def add_transcript(self, messages: list[dict] | tuple[dict, ...]) -> Transcript:
        tid = f"t{len(self.transcripts)}"
        self.transcripts[tid] = Transcript(tid, tuple(dict(m) for m in messages))
        return self.transcripts[tid]

    def reply(self, messages: list[dict], prefill: str, temperature: float, seed: int) -> Any:
        """The target's reply (``chat.reply``), memoised: a seeded reply to the same chat is the same reply."""
        from nla_audit.chat import reply

        c = self.config
        key = ("reply", c.target, json.dumps(messages, sort_keys=True), prefill, c.reply_max_new_tokens, temperature, seed)
        if key not in self.memo:
            self.memo[key] = reply(self.get_nla().target, messages, prefill=prefill,
                                   max_new_tokens=c.reply_max_new_tokens, temperature=temperature, seed=seed)
        return self.memo[key]

    def explain_positions(self, tid: str, positions: list[int]) -> list[Any]:
        """The NLA's ``ExplainedActivation`` at each position, computed once per transcript and position (so a
        search after an explain, or two searches, pay for each explanation once)."""
        tr = self.activations(tid)
        cache = self.explained.setdefault(tid, {})
        for p in positions:
            if p not in cache and (self._key(tr, p)) in self.memo:
                cache[p] = self.memo[self._key(tr, p)]
        todo = [p for p in dict.fromkeys(positions) if p not in cache]
        if todo:
            rows = self.get_nla().explain_vectors(tr.acts[todo], max_new_tokens=self.config.explain_max_new_tokens,
                                                  temperature=self.config.explain_temperature, seed=0)
            cache.update(zip(todo, rows))
            self.memo.update({self._key(tr, p): r for p, r in zip(todo, rows)})
        return [cache[p] for p in positions]

    def _key(self, tr: Transcript, *extra: Any) -> tuple:
        c = self.config
        return (c.av, c.ar, c.target, c.explain_max_new_tokens, c.explain_temperature,
                json.dumps(tr.messages, sort_keys=True), *extra)

    def activations(self, tid: str) -> Transcript:
        """The transcript with its token ids and block-K activations (computed once)."""
        tr = self.transcripts[tid]
        if tr.acts is None:
            key = self._key(tr, "acts")
            if key not in self.memo:
                self.memo[key] = self.get_nla().document_activations(Document(id=tid, messages=tr.messages))
            tr.ids, tr.acts = self.memo[key]
        return tr
