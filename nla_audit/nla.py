"""An NLA pair (AV + AR) bound to its target model: the object tools, evals and the CLI wrap.

``explain_vectors`` gives each vector an explanation and the AR's round-trip score (``nla_audit.roundtrip``); ``explain_document``
extracts the target's block-K activations over a text or chat transcript and explains chosen positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nla_audit.ar import ActivationReconstructor
from nla_audit.av import DEFAULT_RETRIES, ActivationVerbalizer, validate_vectors
from nla_audit.corpus import Document, tokenize_document
from nla_audit.errors import InputError, ModelLoadError
from nla_audit.metrics import normalize
from nla_audit.roundtrip import score_reconstructions

PICKS = ("closest", "consensus")
MAX_DOCUMENT_TOKENS = 2048  # a transcript is read up to here (the AR/AV were trained on far shorter contexts)


@dataclass(frozen=True)
class ExplainedActivation:
    """One explained activation with its round-trip score (``fve_nrm`` is None without a baseline)."""

    explanation: str
    ok: bool
    truncated: bool
    mse_nrm: float
    cos: float
    fve_nrm: float | None
    norm: float
    position: int | None = None
    token: str | None = None
    warning: str | None = None
    best_of: int = 1  # > 1: one sample of this many, chosen by ``pick``
    pick: str = "closest"  # with best_of > 1: "closest" to the activation, or the "consensus" of the samples
    retries: int = 0  # resamples it took to close the explanation (``--retries``); 0 = the first decode

    def to_dict(self) -> dict:
        return asdict(self)


def default_nla_paths() -> tuple[Path, Path]:
    from nla_audit.paths import default_nla_dir

    root = default_nla_dir()
    if root is None:
        raise ModelLoadError("no default NLA is installed yet",
                             fix="pass --av/--ar checkpoint folders, or train one: nla-audit train pipeline --run-dir runs/nla")
    return root / "av", root / "ar"


class NLA:
    def __init__(self, av: ActivationVerbalizer, ar: ActivationReconstructor, target: Any = None,
                 backend: str = "transformers") -> None:
        if av.meta.d_model != ar.meta.d_model:
            raise InputError(f"AV d_model {av.meta.d_model} != AR d_model {ar.meta.d_model}",
                             fix="pass an AV and an AR trained for the same model")
        if backend not in ("transformers", "vllm"):
            raise InputError(f"unknown backend {backend!r}", expected="transformers or vllm")
        self.av, self.ar, self._target = av, ar, target
        self.generator: Any = av  # the transformers AV, or a vLLM verbalizer with the same explain()
        if backend == "vllm":
            from nla_audit.vllm_backend import VLLMVerbalizer

            self.generator = VLLMVerbalizer(av)

    @classmethod
    def load(cls, av: str | Path | None = None, ar: str | Path | None = None, dtype: str = "auto",
             device: str | None = None, backend: str = "transformers") -> NLA:
        if av is None or ar is None:
            dav, dar = default_nla_paths()
            av, ar = av or dav, ar or dar
        return cls(ActivationVerbalizer.from_pretrained(av, dtype, device), ActivationReconstructor.from_pretrained(ar, dtype, device),
                   backend=backend)

    @property
    def layer(self) -> int:
        return self.ar.meta.require_layer()

    @property
    def base_model(self) -> str:
        """The target model the NLA reads (the AV's base)."""
        return self.av.meta.base_model

    @property
    def target(self):
        """The untouched target model (the AV's base), loaded on first use."""
        if self._target is None:
            from nla_audit.models import load_target

            self._target = load_target(self.base_model, device=str(self.av.device))
        return self._target

    # ------------------------------------------------------------------------------------------------
    def explain_vectors(self, vectors: Any, max_new_tokens: int = 150, temperature: float = 0.0,
                        batch_size: int = 16, seed: int | None = None, best_of: int = 1,
                        pick: str = "closest", progress: Any = None,
                        retries: int = DEFAULT_RETRIES) -> list[ExplainedActivation]:
        """One explanation per vector with its round-trip score.

        ``best_of = k > 1`` samples k explanations per vector and keeps one, by ``pick``:

        - ``"closest"``: the one the AR reconstructs closest to the activation. The AR acts as a verifier, which
          an auditor holding the activation can always run, but the score is then selected against the
          activation itself: it measures AV + selection, not one sample of the AV.
        - ``"consensus"``: the one whose reconstruction is closest to the mean reconstruction of the k samples
          (minimum-Bayes-risk decoding under the AV's own distribution). It never looks at the activation, so
          its score is the fidelity of a decoding rule, as greedy or temperature 0.7 is.

        ``retries = n > 0`` resamples each explanation left unclosed up to n times (``av.resample_unclosed``).
        """
        v = validate_vectors(vectors, self.av.d_model)
        check_best_of(best_of, temperature, pick)
        extra = {"progress": progress} if progress is not None and self.generator is self.av else {}
        extra.update({"retries": retries} if retries else {})
        expl, pred = self.sample_explanations(v, best_of, max_new_tokens=max_new_tokens, temperature=temperature,
                                              batch_size=batch_size, seed=seed, **extra)
        scale = self.ar.meta.require_mse_scale()
        scored = score_reconstructions(pred, v.repeat_interleave(best_of, dim=0), scale, self.ar.meta.fve_baseline())
        ok = torch.tensor([e.ok for e in expl])
        keep = (best_sample(scored.mse, ok, best_of) if pick == "closest"
                else consensus_sample(normalize(pred, scale), ok, best_of))
        s = scored.take(keep)
        return [ExplainedActivation(explanation=e.text, ok=e.ok, truncated=e.truncated, mse_nrm=float(s.mse[i]),
                                    cos=float(s.cos[i]), fve_nrm=None if s.fve is None else float(s.fve[i]),
                                    norm=float(v[i].norm()), warning=e.warning, best_of=best_of, pick=pick,
                                    retries=getattr(e, "retries", 0))
                for i, e in enumerate(expl[j] for j in keep.tolist())]

    def sample_explanations(self, vectors: torch.Tensor, k: int, **sampling: Any) -> tuple[list, torch.Tensor]:
        """k explanations per vector (each vector's k consecutive) and the AR's reconstruction of each: the raw
        material of every ``best_of`` rule, exposed so a benchmark can score several rules on the same samples."""
        expl = self.generator.explain(vectors.repeat_interleave(k, dim=0), **sampling)
        pred = self.ar.reconstruct([e.text for e in expl], batch_size=max(sampling.get("batch_size", 16), 16))
        return expl, pred

    def document_activations(self, doc: Document, max_length: int = MAX_DOCUMENT_TOKENS) -> tuple[list[int], torch.Tensor]:
        from nla_audit.extract import text_activations

        ids = tokenize_document(doc, self.target.tokenizer, max_length)
        if len(ids) < 2:
            raise InputError(f"document {doc.id} has {len(ids)} token(s)", expected="at least 2 tokens (position 0 is never explained)")
        return ids, text_activations(self.target, self.layer, ids)

    def explain_document(self, doc: Document, positions: str | list[int] = "all", **sampling: Any) -> list[ExplainedActivation]:
        ids, acts = self.document_activations(doc)
        layout = None
        if doc.messages is not None and positions in LAYOUT_SPECS:
            from nla_audit.chat_layout import chat_layout

            layout = chat_layout(self.target.tokenizer, doc.messages, MAX_DOCUMENT_TOKENS)
        pos = resolve_positions(positions, len(ids), layout)
        rows = self.explain_vectors(acts[pos], **sampling)
        tok = self.target.tokenizer
        return [ExplainedActivation(**{**r.to_dict(), "position": p, "token": tok.decode([ids[p]])})
                for p, r in zip(pos, rows)]

    def steering_vector(self, doc: Document, position: int, edit: str, explanation: str | None = None,
                        max_new_tokens: int = 150) -> tuple[torch.Tensor, str]:
        """The direction that moves the activation at ``position`` of ``doc`` from its explanation to ``edit``:
        ``AR(edit) − AR(explanation)`` (``steering.nla_direction``), and the explanation it started from (the
        NLA's greedy one unless given). Steer with it through ``steering.steer``."""
        from nla_audit.steering import nla_direction

        if explanation is None:
            ids, acts = self.document_activations(doc)
            if not 1 <= position < len(ids):
                raise InputError(f"position {position} is outside the document's {len(ids)} tokens",
                                 expected=f"1 <= position < {len(ids)} (position 0 is the attention sink)")
            explanation = self.explain_vectors(acts[position:position + 1], max_new_tokens=max_new_tokens)[0].explanation
        return nla_direction(self, explanation, edit), explanation


def load_compatible_target(spec: str, nla: NLA) -> Any:
    """A target ``nla`` can read other than its own base: the base itself or a fine-tune of it (an organism's card
    names its base) with the same width; anything else is one clear line. Used to audit or steer organisms."""
    from nla_audit.models import base_model_name, canonical_model_name, load_target

    base = canonical_model_name(nla.base_model)
    if base_model_name(spec) != base:
        raise InputError(f"the NLA reads {base}, but the target {spec} is not that model or a fine-tune of it",
                         fix="use a model fine-tuned from the NLA's base (an organism), or an NLA trained on it")
    target = load_target(spec, device=str(nla.av.device))
    if target.d_model != nla.av.d_model:
        raise InputError(f"the target {spec} has width {target.d_model}, the NLA reads {nla.av.d_model}")
    return target


def check_best_of(best_of: int, temperature: float, pick: str) -> None:
    """One clear line for a selection that cannot work (greedy samples are all the same; unknown rules)."""
    if best_of < 1 or (best_of > 1 and temperature <= 0):
        raise InputError(f"best_of = {best_of} with temperature {temperature}",
                         expected="best_of >= 1, and temperature > 0 when best_of > 1 (greedy samples are identical)",
                         fix="pass --temperature 0.7 with --best-of")
    if pick not in PICKS:
        raise InputError(f"pick = {pick!r}", expected=" or ".join(PICKS))
    if pick == "consensus" and best_of < 3:
        raise InputError(f"pick = consensus with best_of = {best_of}",
                         expected="best_of >= 3 (two samples are equally near their mean, so the pick would be a tie)",
                         fix="pass --best-of 8")


def best_sample(mse: torch.Tensor, ok: torch.Tensor, k: int) -> torch.Tensor:
    """Flat index of the lowest-mse sample in each consecutive group of ``k``; tagged samples beat untagged ones
    (a failed parse is never preferred to a well-formed explanation, whatever its score)."""
    m = mse.float()
    pick = (m + (~ok).float() * (m.max() + 1)).view(-1, k).argmin(dim=1)  # an untagged sample never beats a tagged one
    return torch.arange(len(pick)) * k + pick


def consensus_sample(pred: torch.Tensor, ok: torch.Tensor, k: int) -> torch.Tensor:
    """Flat index, in each consecutive group of ``k`` reconstructions, of the one closest to the group's mean.

    The mean and the candidates are the tagged samples only (a group with none falls back to all of them).
    For squared error, closest to the mean is the sample with the least summed distance to the others: the
    minimum-Bayes-risk choice, which needs no activation. ``pred`` should be normalised as the metric is.
    """
    p = pred.float().view(-1, k, pred.shape[-1])
    use = ok.view(-1, k)
    use = use | ~use.any(dim=1, keepdim=True)  # no tagged sample in the group: all of them count
    w = use.float()[..., None]
    centre = (p * w).sum(dim=1) / w.sum(dim=1)
    dist = (p - centre[:, None]).pow(2).sum(dim=-1).masked_fill(~use, float("inf"))
    return torch.arange(p.shape[0]) * k + dist.argmin(dim=1)


OPENING_TOKENS = 3  # reply tokens the 'opening' spec reads after the header


def template_positions(spec: str, layout: Any) -> list[int]:
    """``header``: the chat-template tokens right before the last assistant message (``<|im_end|>``,
    ``<|im_start|>assistant`` and the line break for ChatML), where the reply is planned; ``opening``: the header
    and the reply's first ``OPENING_TOKENS`` tokens (where an auditor looks for a planted goal: the plan and how
    the reply starts); ``control``: every template token but position 0."""
    if spec == "control":
        return [p for p in layout.control_positions() if p >= 1]
    last = max((i for i, m in enumerate(layout.messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise InputError(f"positions {spec!r} need an assistant message in the transcript",
                         fix="add the assistant's reply, or pick positions by index")
    head = [p for p in layout.control_positions() if p >= 1 and layout.message[p] == last]
    if spec == "opening":
        reply = [p for p in range(len(layout.ids)) if not layout.control[p] and layout.message[p] == last]
        return head + reply[:OPENING_TOKENS]
    return head


TEMPLATE_SPECS = ("header", "opening", "control")
LAYOUT_SPECS = (*TEMPLATE_SPECS, "last")  # specs that read a chat's layout when the document is a chat


def check_position_spec(spec: str, chat: bool) -> None:
    """The syntax of a positions argument, checked before any model loads (ranges need the token count, later)."""
    if spec in ("all", "last"):
        return
    if spec in TEMPLATE_SPECS:
        if not chat:
            raise InputError(f"positions {spec!r} need a chat transcript", fix="pass --transcript, or positions by index")
        return
    _parse_position_spec(spec, 1 << 30)


def resolve_positions(spec: str | list[int], n_tokens: int, layout: Any = None) -> list[int]:
    """'all' (every position but the attention sink 0), 'last' (with a chat's ``layout``: the last token of the
    last message, not the template's closing tokens), 'header' / 'control' (chat transcripts: see
    ``template_positions``), or explicit positions: indices and 'a:b' ranges, comma-separated, negative from the
    end (``"3,7"``, ``"-5:"``, ``"10:20,-1"``); repeats are dropped."""
    if spec in TEMPLATE_SPECS:
        if layout is None:
            raise InputError(f"positions {spec!r} need a chat transcript", fix="pass --transcript, or positions by index")
        return template_positions(str(spec), layout)
    if spec == "all":
        return list(range(1, n_tokens))
    if spec == "last":
        if layout is not None:  # a chat: the last token of the last message, not the template's closing tokens
            content = [p for p in range(1, n_tokens) if not layout.control[p]]
            return [content[-1] if content else n_tokens - 1]
        return [n_tokens - 1]
    if isinstance(spec, str):
        spec = _parse_position_spec(spec, n_tokens)
    out = []
    for p in spec:
        q = p + n_tokens if p < 0 else p
        if not 0 <= q < n_tokens:
            raise InputError(f"position {p} is out of range for {n_tokens} tokens", expected=f"-{n_tokens} <= i < {n_tokens}")
        if q not in out:
            out.append(q)
    if not out:
        raise InputError(f"positions {spec!r} select none of the {n_tokens} tokens", expected="all, last, i,j,k or a:b")
    return out


def _parse_position_spec(spec: str, n_tokens: int) -> list[int]:
    out: list[int] = []
    try:
        for part in filter(None, (x.strip() for x in spec.split(","))):
            if ":" in part:
                lo, hi = (int(x) if x.strip() else None for x in part.split(":", 1))
                out += list(range(n_tokens))[slice(lo, hi)]
            else:
                out.append(int(part))
    except ValueError:
        raise InputError(f"positions {spec!r} are not understood",
                         expected="all, last, header, control, i,j,k or a:b (negative from the end)") from None
    return out
