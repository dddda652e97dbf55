"""The activation verbalizer (AV): vector → explanation text.

A copy of the target LM reads one activation vector in place of the injection token's embedding inside the
fixed AV prompt (the reference code's) and writes ``<explanation>…</explanation>``. Everything about the
prompt and the injection comes from the sidecar and is re-checked against the live tokenizer at load.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nla_audit.errors import InputError, SidecarError
from nla_audit.injection import av_prompt_ids, check_tokens, injecting
from nla_audit.sidecar import AV_TEMPLATE, ModelSidecar

_EXPL_RE = re.compile(r"<explanation>\s*(.*?)\s*</explanation>", re.DOTALL)
RETRY_TEMPERATURE = 0.7  # a greedy decode's resamples: the reference inference CLI's default temperature
# The product's decode rule for unclosed explanations: resamples per row in ``nla-audit explain/score``,
# ``NLA.explain_vectors``, the evals' explainer and bench (the raw ``explain`` and the benchmarks take it
# explicitly). A shipped NLA measured under ``--retries N`` sets it to N (docs/results/chat-nla.md, phase 11).
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class Explanation:
    """One AV output. ``ok`` is False when no ``<explanation>`` pair was found: ``text`` is then the raw
    output and must not be trusted as an explanation; ``warning`` flags the known injection failure."""

    text: str
    raw: str
    ok: bool
    truncated: bool
    n_tokens: int
    warning: str | None = None
    retries: int = 0  # resamples this row took (``resample_unclosed``); 0 = the first decode


def parse_explanation(raw: str) -> tuple[str, bool]:
    """First ``<explanation>…</explanation>`` match, stripped (the AR was trained on the bare text)."""
    m = _EXPL_RE.search(raw)
    return (m.group(1).strip(), True) if m else (raw.strip(), False)


def resample_unclosed(explain: Callable[..., list[Explanation]], vectors: torch.Tensor, first: list[Explanation],
                      retries: int, temperature: float, seed: int | None, **decode: Any) -> list[Explanation]:
    """``first`` with each unclosed row (no ``<explanation>`` pair) decoded again, up to ``retries`` times.

    Why: a greedy AV can loop (a digit run copied from the context until ``max_new_tokens``) and never close its
    tag; that raw text is noise to an auditor and to the AR alike. A resample is drawn at ``temperature`` (or
    ``RETRY_TEMPERATURE`` after a greedy decode), seeded by ``seed + 1 + attempt``, so a rerun gives the same text;
    the first closed one is kept. A row that never closes keeps its first output (``ok`` False). Closed rows are
    never touched, so the rule changes nothing where the AV already ends its explanation.
    """
    if retries < 0:
        raise InputError(f"retries = {retries}", expected="retries >= 0 (0 keeps every first decode)")
    out, todo = list(first), [i for i, e in enumerate(first) if not e.ok]
    t = temperature if temperature > 0 else RETRY_TEMPERATURE
    for attempt in range(retries):
        if not todo:
            break
        again = explain(vectors[todo], temperature=t, seed=(seed or 0) + 1 + attempt, **decode)
        for i, e in zip(todo, again):
            if e.ok:
                out[i] = replace(e, retries=attempt + 1)
        todo = [i for i in todo if not out[i].ok]
    for i in todo:
        out[i] = replace(out[i], retries=retries)
    return out


def foreign_script_fraction(text: str) -> float:
    """Share of letters that are not Latin: CJK output is the signature of a failed injection (§8.3)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    foreign = sum(1 for c in letters if not unicodedata.name(c, "").startswith("LATIN"))
    return foreign / len(letters)


def injection_warning(text: str, threshold: float = 0.3) -> str | None:
    frac = foreign_script_fraction(text)
    if frac > threshold:
        return (f"{frac:.0%} of the letters are non-Latin: this looks like the known injection failure "
                "(wrong injection_scale, template drift or double BOS)")
    return None


def validate_vectors(vectors: Any, d_model: int, name: str = "vectors") -> torch.Tensor:
    """[n, d] float32; rejects the wrong width, NaN/inf and zero-norm rows with one clear line."""
    v = torch.as_tensor(vectors).float()
    if v.dim() == 1:
        v = v[None]
    if v.dim() != 2 or v.shape[1] != d_model:
        raise InputError(f"{name} have shape {tuple(v.shape)}", expected=f"[n, {d_model}] (d_model of this NLA)",
                         fix="extract activations from the NLA's own target model and layer")
    if not torch.isfinite(v).all():
        bad = int((~torch.isfinite(v)).any(dim=1).nonzero()[0])
        raise InputError(f"{name} row {bad} contains NaN or inf", expected="finite values")
    norms = v.norm(dim=1)
    if (norms == 0).any():
        raise InputError(f"{name} row {int((norms == 0).nonzero()[0])} has zero norm",
                         expected="a non-zero activation (the AV only sees its direction)")
    return v


class ActivationVerbalizer:
    """Explain activation vectors in natural language (transformers backend; CPU or GPU)."""

    def __init__(self, model: Any, tokenizer: Any, meta: ModelSidecar, source: str = "") -> None:
        if meta.tokens is None:
            raise SidecarError(f"{source}: AV sidecar has no tokens block", fix="restore the sidecar")
        if meta.injection_scale is None:
            raise SidecarError(f"{source}: AV sidecar has no extraction.injection_scale",
                               expected="a positive number (a round number a bit above the mean ‖v‖)")
        self.model, self.tokenizer, self.meta, self.source = model, tokenizer, meta, source
        self.template = meta.av_template or AV_TEMPLATE
        check_tokens(tokenizer, meta.tokens, self.template, source or "AV")
        self.prompt_ids = av_prompt_ids(tokenizer, self.template, meta.tokens.injection_char)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, dtype: str = "auto", device: str | None = None,
                        injection_scale: float | None = None) -> ActivationVerbalizer:
        from nla_audit.checkpoint import load_backbone, read_sidecar, resolve_checkpoint
        from nla_audit.models import resolve_device, resolve_dtype

        ckpt = resolve_checkpoint(path_or_id)
        meta = read_sidecar(ckpt, "av")
        if injection_scale is not None:
            meta = meta.with_(injection_scale=float(injection_scale))
        dev = resolve_device(device)
        model, tok = load_backbone(ckpt, meta, resolve_dtype(dtype, dev), dev)
        return cls(model, tok, meta, str(ckpt))

    @property
    def d_model(self) -> int:
        return self.meta.d_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --------------------------------------------------------------------------------------- generation
    def generate(self, vectors: torch.Tensor, max_new_tokens: int = 150, temperature: float = 0.0,
                 top_p: float = 1.0, batch_size: int = 16, seed: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[list[int]]:
        """Response token ids (no prompt) per vector, generated in batches with the vector injected;
        ``progress(done, total)`` is called after each batch."""
        v = validate_vectors(vectors, self.d_model)
        return self._seeded_batches(v, batch_size, seed, lambda chunk: self._generate_batch(
            chunk, [self.prompt_ids] * len(chunk), max_new_tokens, temperature, top_p), progress)

    def _seeded_batches(self, v: torch.Tensor, batch_size: int, seed: int | None, decode,
                        progress: Callable[[int, int], None] | None = None) -> list[list[int]]:
        """``decode`` over row chunks. A seeded call draws from a forked RNG: same seed + same rows → same text,
        and the caller's RNG is untouched."""
        out: list[list[int]] = []
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for i in range(0, len(v), batch_size):
                out.extend(decode(v[i:i + batch_size]))
                if progress is not None:
                    progress(len(out), len(v))
        return out

    def _generate_batch(self, v: torch.Tensor, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                        top_p: float) -> list[list[int]]:
        ids, mask = left_pad(prompts, self.pad_id)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.pad_id,
                                  "eos_token_id": self.tokenizer.eos_token_id}
        kwargs.update({"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0
                      else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        with torch.inference_mode(), injecting(self.model, self.meta.require_tokens(), v, self.meta.require_injection_scale()):
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        new = gen[:, ids.shape[1]:].tolist()
        return [strip_after_eos(row, self.tokenizer.eos_token_id, self.pad_id) for row in new]

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def to_explanation(self, ids: list[int], max_new_tokens: int) -> Explanation:
        eos = self.tokenizer.eos_token_id
        truncated = len(ids) >= max_new_tokens and (not ids or ids[-1] != eos)
        raw = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, ok = parse_explanation(raw)
        return Explanation(text=text, raw=raw, ok=ok, truncated=truncated, n_tokens=len(ids),
                           warning=injection_warning(text))

    def explain(self, vectors: Any, max_new_tokens: int = 150, temperature: float = 0.0, top_p: float = 1.0,
                batch_size: int = 16, seed: int | None = None,
                progress: Callable[[int, int], None] | None = None, retries: int = 0) -> list[Explanation]:
        """Explain each row of ``vectors`` ([n, d] or [d]); greedy by default, sampled when temperature > 0;
        ``retries > 0`` resamples the rows left unclosed (``resample_unclosed``)."""
        v = validate_vectors(vectors, self.d_model)
        ids = self.generate(v, max_new_tokens, temperature, top_p, batch_size, seed, progress)
        first = [self.to_explanation(row, max_new_tokens) for row in ids]
        return resample_unclosed(self.explain, v, first, retries, temperature, seed, max_new_tokens=max_new_tokens,
                                 top_p=top_p, batch_size=batch_size) if retries else first


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding keeps every prompt's last token at the right edge, where generation continues."""
    from nla_audit.padding import pad_batch

    return pad_batch(rows, pad_id, side="left")


def strip_after_eos(row: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Keep tokens up to and including the first EOS (generate pads finished rows)."""
    if eos_id in row:
        return row[: row.index(eos_id) + 1]
    return row
