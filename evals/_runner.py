"""The eval runner: one per task invocation. It resolves the site (target model, layer K) and the explainer
from the task parameters, extracts each item's activation at its position, and serves explanations to the
solver in micro-batches (inspect runs samples concurrently; the AV generates a batch at once).

Conditions (``-T explainer=``):

* ``nla``: the NLA's AV (``NLAExplainer``), greedy by default (``-T temperature=0.7`` samples, seeded);
* ``nla-shuffled`` (**floor**): the same AV fed the activation of *another* eval item (a seeded derangement of
  the task's eval items, fixed per dataset and seed, so it does not depend on batch composition);
* ``sae``: the SAE baseline from ``nla_audit.baselines`` (``-T sae=PATH``), when installed;
* ``probe`` (**ceiling**): a linear probe on the raw activation, fit on the task's train items (``_probe``);
* ``text`` (**reader**): no activation; the grader reads the raw text context up to the explained token.

Heavy objects (target, NLA, encoder) are cached per process and loaded on first use, so building a task (and
importing the registry) stays cheap and a bad site fails before anything is loaded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from nla_audit.errors import InputError, ModelLoadError
from nla_audit.evals._items import DatasetFile, context_text, resolve_position, select
from nla_audit.site import Site

EXPLAINERS = ("nla", "nla-shuffled", "sae", "probe", "text")
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

_CACHE: dict[tuple, Any] = {}
_COMPUTE = threading.RLock()  # one heavy computation at a time (2 CPU cores; torch threads do the rest)


@dataclass(frozen=True)
class EvalConfig:
    """Task parameters shared by every eval task (each is an ``-T key=value``)."""

    av: str | None = None
    """AV checkpoint folder (default: the shipped NLA, which errors clearly until one exists)."""
    ar: str | None = None
    """AR checkpoint folder (default: the shipped NLA)."""
    explainer: str = "nla"
    """nla | nla-shuffled (floor) | sae | probe (ceiling) | text (raw-context reader)."""
    grader: str = "embed"
    """embed (offline proxy, default) | model (inspect `grader` role, e.g. Claude) | both."""
    grader_model: str | None = None
    """Model bound to the `grader` role, e.g. anthropic/claude-haiku-4-5 (or --model-role grader=...)."""
    n: int | None = None
    """Eval items per group (default: all shipped)."""
    probe_train: int | None = None
    """Train items per group for the probe ceiling (default: all)."""
    seed: int = 0
    """Dataset seed: the shipped JSON for its seed, else regenerated in memory; also seeds the floor."""
    model: str | None = None
    """Target model; must match the NLA's. Default: the NLA's target, or the embedded SmolLM2."""
    layer: int | None = None
    """Layer K; must match the NLA's. Default: the NLA's layer, or (2·L)//3."""
    sae: str = "default"
    """SAE folder for explainer=sae (default: the shipped SAE of nla_audit.baselines)."""
    max_new_tokens: int = 150
    temperature: float = 0.0
    """AV sampling temperature (0 = greedy); sampling is seeded by ``seed`` per batch."""
    batch_size: int = 8
    label: str | None = None
    """Checkpoint label in result tables (default: derived from the AV path)."""
    device: str | None = None
    allow_base: bool = False
    """Run a dataset tied to an implanted target (sandbagging) on another model, as a negative control."""

    def __post_init__(self) -> None:
        from nla_audit.evals._graders import GRADERS

        if self.explainer not in EXPLAINERS:
            raise InputError(f"unknown explainer {self.explainer!r}", expected=" | ".join(EXPLAINERS))
        if self.grader not in GRADERS:
            raise InputError(f"unknown grader {self.grader!r}", expected=" | ".join(GRADERS))
        if (self.av is None) != (self.ar is None):
            raise InputError("only one of av / ar was given", expected="both -T av=... -T ar=... or neither")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise InputError("max_new_tokens and batch_size must be >= 1")
        if not 0.0 <= self.temperature <= 5.0:
            raise InputError(f"temperature {self.temperature}", expected="a number in [0, 5] (0 = greedy)")

    @property
    def uses_nla(self) -> bool:
        return self.explainer in ("nla", "nla-shuffled")

    @property
    def uses_model_grader(self) -> bool:
        return self.grader in ("model", "both") and self.explainer != "probe"


def model_location(name: str | None) -> str:
    """Where an eval loads its target from, in one spelling per target: the embedded aliases → the hub id
    (``models.canonical_model_name``, the one model name), an organism → its merged folder, other local folders →
    absolute paths. Not a second model name: the name recorded and compared is ``canonical_model_name``'s."""
    from nla_audit.models import canonical_model_name, materialize_organism
    from nla_audit.organisms import is_organism_spec

    if name is None or canonical_model_name(name) == SMOLLM2:
        return SMOLLM2
    if is_organism_spec(name):  # ``organism:NAME``: the merged folder in the cache, which keeps the card
        return str(materialize_organism(name))
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


@dataclass(frozen=True)
class EvalSubject:
    """What one eval run reads and with what: the target model and layer K whose activations it explains (the
    ``site``), and the NLA checkpoint folders (None when no NLA is involved) with their label in result tables.
    Not ``nla_audit.site.Site``, which is the (base model, layer, width) identity alone: this adds the checkpoints,
    and ``model`` may be a fine-tune (an organism) that the NLA of its base reads."""

    model: str  # canonical name
    layer: int
    checkpoint: str  # label for tables ("-" when no NLA is involved)
    av: str | None
    ar: str | None

    @property
    def site(self) -> Site:
        return Site(self.model, self.layer)


def resolve_subject(cfg: EvalConfig, ds: DatasetFile) -> EvalSubject:
    """Where the eval reads activations and which NLA explains them, checked against the NLA checkpoint and the
    dataset; reads sidecars and configs only (no weights)."""
    av, ar, nla_model, nla_layer = cfg.av, cfg.ar, None, None
    if cfg.uses_nla or av is not None:
        if av is None:
            from nla_audit.nla import default_nla_paths

            av, ar = (str(p) for p in default_nla_paths())
        from nla_audit.checkpoint import read_sidecar, resolve_checkpoint

        assert av is not None and ar is not None  # both or neither (EvalConfig), and the defaults filled both
        av_meta = read_sidecar(resolve_checkpoint(av), "av")
        ar_meta = read_sidecar(resolve_checkpoint(ar), "ar")
        nla_model = model_location(av_meta.base_model)
        nla_layer = ar_meta.require_layer()
    if cfg.model is not None:
        model = model_location(cfg.model)
    elif (default := _default_target(ds, cfg, nla_model)) is not None:
        model = model_location(default)
    else:
        model = nla_model or SMOLLM2
    if nla_model is not None and model != nla_model and not _fine_tune_of(model, nla_model):
        raise InputError(f"the NLA checkpoint reads {nla_model}, but the eval asks for target {model}",
                         fix="pass an NLA trained on that target, or drop -T model / --model")
    layer = cfg.layer if cfg.layer is not None else (nla_layer if nla_layer is not None else _default_layer(model))
    if nla_layer is not None and layer != nla_layer:
        raise InputError(f"the NLA checkpoint reads layer {nla_layer}, but the eval asks for layer {layer}",
                         fix="pass an NLA trained at that layer, or drop -T layer / --layer")
    if not cfg.allow_base:
        _check_dataset_site(ds, model)
    label = cfg.label or (_label(av) if av is not None and cfg.uses_nla else "-")
    if cfg.explainer == "sae" and not cfg.label:
        label = f"sae:{Path(cfg.sae).name}"
    return EvalSubject(model=model, layer=int(layer), checkpoint=label, av=av, ar=ar)


def _implant_marker(ds: DatasetFile) -> str | None:
    return (ds.site or {}).get("implant_marker")


def _default_target(ds: DatasetFile, cfg: EvalConfig, nla_model: str | None) -> str | None:
    """A dataset tied to an implanted target runs on the shipped organism that carries the implant (sandbagging)
    when the NLA reads that organism's base, unless the run is a base-model control; every other dataset
    defaults to the NLA's model."""
    from nla_audit.models import base_model_name, canonical_model_name
    from nla_audit.organisms import shipped

    if not _implant_marker(ds) or cfg.allow_base or ds.task not in shipped():
        return None
    spec = f"organism:{ds.task}"
    return spec if nla_model is None or base_model_name(spec) == canonical_model_name(nla_model) else None


def _fine_tune_of(model: str, base: str) -> bool:
    """An organism folder (its card names the base it was fine-tuned from) is read by its base's NLA."""
    from nla_audit.models import base_model_name, canonical_model_name

    return base_model_name(model) == canonical_model_name(base)


def _label(av: str) -> str:
    p = Path(av).expanduser().resolve()
    return p.parent.name if p.name in ("av", "actor") else p.name


def _default_layer(model: str) -> int:
    from transformers import AutoConfig

    from nla_audit.models import default_layer, resolve_model_path, text_config

    try:
        cfg = AutoConfig.from_pretrained(resolve_model_path(model))
    except OSError as exc:
        raise ModelLoadError(f"cannot read the config of {model}: {str(exc).splitlines()[0]}") from None
    return default_layer(int(text_config(cfg).num_hidden_layers))


def _check_dataset_site(ds: DatasetFile, model: str) -> None:
    """A dataset tied to one target (sandbagging needs the implanted model) refuses any other."""
    marker = _implant_marker(ds)
    if not marker:
        return
    path = Path(model)
    if not (path.is_dir() and (path / marker).exists()):
        raise InputError(f"the {ds.task} dataset needs a target with the implant ({marker}); {model} has none",
                         fix=f"use -T model=organism:{ds.task} (`nla-audit organism build {ds.task}` if it is not "
                             "shipped) or an implanted folder; or -T allow_base=true for a negative control")


# ------------------------------------------------------------------------------------------- loading
def _cached(key: tuple, make):
    with _COMPUTE:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def load_nla(av: str, ar: str, device: str | None):
    from nla_audit.nla import NLA

    return _cached(("nla", str(av), str(ar), device), lambda: NLA.load(av, ar, dtype="float32", device=device))


def load_target_cached(model: str, device: str | None):
    from nla_audit.models import load_target

    return _cached(("target", model, device), lambda: load_target(model, dtype="float32", device=device))


def load_sae_explainer(path: str, device: str | None):
    """The SAE baseline behind the ``Explainer`` interface (``nla_audit.baselines.SAEExplainer``)."""
    try:
        from nla_audit.baselines import SAEExplainer
    except ImportError as exc:
        raise InputError(f"explainer=sae needs the SAE baseline (nla_audit.baselines), which cannot be imported: {exc}",
                         fix="pip install 'nla_audit[sae]', or use explainer=nla/probe/text") from None
    return SAEExplainer.from_dir(path, device=device or "cpu")


# ------------------------------------------------------------------------------------------- runner
class Runner:
    """Per-task state: items, site, lazily loaded models, activation cache, micro-batched explanations."""

    def __init__(self, spec: Any, ds: DatasetFile, cfg: EvalConfig) -> None:
        self.spec, self.ds, self.cfg = spec, ds, cfg
        self.subject = resolve_subject(cfg, ds)
        self.eval_items = select(ds.items, "eval", cfg.n)
        self.train_items = select(ds.items, "train", cfg.probe_train)
        if not self.eval_items:
            raise InputError(f"the {ds.task} dataset has no eval items")
        if cfg.explainer == "probe" and not self.train_items:
            raise InputError(f"the {ds.task} dataset has no train items for the probe ceiling")
        self.by_id = {it["id"]: it for it in ds.items}
        self.partner = _derangement([it["id"] for it in select(ds.items, "eval", None)], cfg.seed)
        self._acts: dict[str, tuple] = {}
        self._probe = None
        self._pending: list[_Request] = []
        self._lock: anyio.Lock | None = None
        if cfg.explainer == "sae":
            self.explainer()  # load it now: a site mismatch fails before the eval starts

    # ---- heavy objects
    @property
    def nla(self):
        return load_nla(self.subject.av, self.subject.ar, self.cfg.device) if self.subject.av else None

    @property
    def target(self):
        nla = self.nla if self.cfg.uses_nla else None
        if nla is not None and self.subject.model == model_location(nla.base_model):
            return nla.target  # the NLA's own copy: one model in memory, not two
        return load_target_cached(self.subject.model, self.cfg.device)  # e.g. an organism over the NLA's base

    def explainer(self):
        from nla_audit.explainer import NLAExplainer

        if self.cfg.uses_nla:
            return NLAExplainer(self.nla, max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature,
                                seed=self.cfg.seed)
        if self.cfg.explainer == "sae":
            key = ("sae", self.cfg.sae, self.subject.model, self.subject.layer)
            exp = _cached(key, lambda: load_sae_explainer(self.cfg.sae, self.cfg.device))
            from nla_audit.site import check_same_site

            check_same_site(exp, self.subject.site)  # hub id and local copy of it match
            return exp
        return None

    # ---- activations
    def activations(self, items: list[dict]):
        """(vectors [n, d] float32, infos) at each item's position; cached per item id."""
        import torch

        todo = [it for it in items if it["id"] not in self._acts]
        if todo:
            self._extract(todo)
        return (torch.stack([self._acts[it["id"]][0] for it in items]), [self._acts[it["id"]][1] for it in items])

    def _extract(self, items: list[dict], chunk: int = 16) -> None:
        from nla_audit.extract import block_outputs

        target = self.target
        tok = target.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        prepared = [self._prepare(it, target) for it in items]
        for i in range(0, len(prepared), chunk):
            part = prepared[i:i + chunk]
            with _COMPUTE:
                hidden = block_outputs(target.model, self.subject.layer, [p[0] for p in part], pad)
            for j, (ids, pos, info) in enumerate(part):
                info = {**info, "position": pos, "token": tok.decode([ids[pos]]), "n_tokens": len(ids)}
                self._acts[items[i + j]["id"]] = (hidden[j, pos].clone(), info)

    def _prepare(self, item: dict, target: Any) -> tuple[list[int], int, dict]:
        ids, pos, _ = resolve_position(item, target.tokenizer)
        if item.get("answer_prefix") is None:
            return ids, pos, {}
        import torch  # the target answers first; its own answer token is explained (sandbagging)

        with _COMPUTE, torch.inference_mode():
            logits = target.model(input_ids=torch.tensor([ids], device=target.device)).logits[0, -1]
        nxt = int(logits.argmax())
        answer = target.tokenizer.decode([nxt]).strip()
        return ids + [nxt], len(ids), {"answer": answer}

    # ---- explanations (micro-batched)
    def explain_batch(self, items: list[dict]) -> list[dict]:
        """Synchronous: explanation (or probe choice) for each item under the run's condition."""
        cond = self.cfg.explainer
        if cond == "text":
            tok = self.target.tokenizer
            return [{"explanation": context_text(it, tok)} for it in items]
        vecs, infos = self.activations(items)
        if cond == "probe":
            probe = self.probe()
            return [{**info, **self.spec.probe_choice(probe, it, v)} for it, v, info in zip(items, vecs, infos)]
        src = [self.by_id[self.partner[it["id"]]] for it in items] if cond == "nla-shuffled" else items
        src_vecs = self.activations(src)[0] if cond == "nla-shuffled" else vecs
        exp = self.explainer()
        with _COMPUTE:
            texts = exp.describe(src_vecs)
        out = [{**info, "explanation": t} for t, info in zip(texts, infos)]
        if cond == "nla-shuffled":
            for o, s in zip(out, src):
                o["shuffled_from"] = s["id"]
        if self.cfg.uses_nla:
            for o, f in zip(out, self._fve(texts, vecs)):
                o["fve_nrm"] = f
        return out

    def _fve(self, texts: list[str], gold) -> list[float | None]:
        """Each explanation's round-trip fve_nrm against the activation of *its own* item (for the floor too: the
        explanation was read from the partner's activation), by ``roundtrip.score_texts``."""
        from nla_audit.roundtrip import score_texts

        ar = self.nla.ar
        base = ar.meta.fve_baseline()
        if base is None:
            return [None] * len(texts)
        with _COMPUTE:
            scored = score_texts(ar, texts, gold, base)
        return [round(float(x), 4) for x in scored.require_fve()]

    async def explain(self, item: dict) -> dict:
        """Queue ``item``; whoever holds the lock runs a batch of everything pending (own item first)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        req = _Request(item)
        self._pending.append(req)
        await anyio.sleep(0.05)  # let concurrently started samples queue up
        while not req.done:
            async with self._lock:
                if req.done:
                    break
                batch = [req] + [r for r in self._pending if r is not req][: self.cfg.batch_size - 1]
                for r in batch:
                    self._pending.remove(r)
                try:
                    results = await anyio.to_thread.run_sync(self.explain_batch, [r.item for r in batch])
                    for r, res in zip(batch, results):
                        r.result, r.done = res, True
                except Exception as exc:  # every waiting sample fails with the batch's error
                    for r in batch:
                        r.error, r.done = exc, True
        if req.error is not None:
            raise req.error
        return req.result

    # ---- probe ceiling
    def probe(self):
        if self._probe is None:
            items = self.train_items
            vecs, _ = self.activations(items)
            self._probe = self.spec.fit_probe(items, vecs)
        return self._probe


class _Request:
    def __init__(self, item: dict) -> None:
        self.item, self.done = item, False
        self.result: Any = None
        self.error: Exception | None = None


def _derangement(ids: list[str], seed: int) -> dict[str, str]:
    """Each eval item's floor partner: another eval item, by ``metrics.derangement`` (the one floor)."""
    from nla_audit.metrics import derangement

    return {ids[i]: ids[j] for i, j in enumerate(derangement(len(ids), seed).tolist())}
