"""The shared eval framework: one ``TaskSpec`` per task folder, one ``build_task`` for all of them.

Flow of a sample: the solver (``explain_activation``) asks the runner for the item's explanation under the
chosen condition (NLA, shuffled floor, SAE, raw-text reader, or the probe ceiling's choice); the scorers
then pick an option from that explanation alone: the offline embedding grader (default), the ``grader``-role
model, or both side by side; the probe's pick is scored directly. Accuracy tasks report accuracy per group with
a Wilson interval; gap tasks (CoT hints, sandbagging) report P(says positive | positive) − P(says positive |
negative) with a bootstrap interval. ``_results.results_frame`` turns any set of logs into one DataFrame.

This module is imported by the inspect registry: keep heavy imports (torch, transformers) inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from inspect_ai import Task
from inspect_ai._util.error import PrerequisiteError  # inspect prints it as one message, not a traceback
from inspect_ai.dataset import Sample
from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    ModelOutput,
    model_roles,
)
from inspect_ai.scorer import (
    Metric,
    SampleScore,
    Score,
    Scorer,
    Target,
    accuracy,
    ci_wilson,
    grouped,
    metric,
    scorer,
)
from inspect_ai.solver import Generate, Solver, TaskState, solver

from nla_audit.errors import InputError, NLAAuditError
from nla_audit.evals._items import DatasetFile, load_items
from nla_audit.evals._runner import EvalConfig, Runner

STORE_KEY = "nla_eval"


@dataclass(frozen=True)
class TaskSpec:
    """What differs between tasks: data, the embedding grader's option glosses, the metric and the probe."""

    name: str
    version: str
    folder: Path
    build: Callable[[int], DatasetFile]
    gloss: Callable[[dict, int], str]
    """Text the offline grader compares the explanation with, for option i of an item."""
    kind: str = "accuracy"
    """accuracy | gap (score = 1 when the grader picks option ``positive``; metric = gap by condition)."""
    probe_kind: str = "label"
    """label (logistic regression per group) | embedding (ridge to the true option's sentence embedding)."""
    positive: int = 0

    @property
    def shipped(self) -> Path:
        return self.folder / "data.json"

    def load(self, seed: int) -> DatasetFile:
        return load_items(self.name, self.version, seed, self.shipped, self.build)

    # ---- probe ceiling
    def fit_probe(self, items: list[dict], vecs: Any) -> Any:
        from nla_audit.evals._probe import EmbeddingProbe, LabelProbe

        if self.probe_kind == "embedding":
            from nla_audit.evals._graders import encode

            return EmbeddingProbe(vecs, encode([it["options"][it["target"]] for it in items]))
        probes = {}
        for group in dict.fromkeys(it["group"] for it in items):
            idx = [i for i, it in enumerate(items) if it["group"] == group]
            probes[group] = LabelProbe(vecs[idx], [items[i]["options"][items[i]["target"]] for i in idx])
        return probes

    def probe_choice(self, probe: Any, item: dict, vec: Any) -> dict:
        if self.probe_kind == "embedding":
            from nla_audit.evals._graders import encode

            choice, scores = probe.choose(vec, encode(item["options"]))
        else:
            if item["group"] not in probe:
                raise InputError(f"no train items for group {item['group']!r}; the probe cannot score it")
            choice, scores = probe[item["group"]].choose(vec, item["options"])
        return {"choice": choice, "probe_scores": scores}


def params_doc() -> str:
    return ", ".join(f.name for f in fields(EvalConfig))


class TaskInputError(InputError, PrerequisiteError):
    """A bad ``-T`` parameter or input: an ``InputError`` for ``nla-audit eval`` (one line, exit 2) that is also
    inspect's ``PrerequisiteError``, which ``inspect eval`` prints as one message instead of a traceback."""

    def __init__(self, message: str) -> None:
        InputError.__init__(self, message)
        self.message = f"nla_audit: {message}"


def build_task(spec: TaskSpec, **params: Any) -> Task:
    """The inspect ``Task`` for ``spec`` under the given ``-T`` parameters (see ``EvalConfig``); a user error is
    one message under both ``nla-audit eval`` and ``inspect eval``."""
    try:
        return _build_task(spec, **params)
    except TaskInputError:
        raise
    except NLAAuditError as exc:
        raise TaskInputError(str(exc)) from None


def _build_task(spec: TaskSpec, **params: Any) -> Task:
    unknown = set(params) - {f.name for f in fields(EvalConfig)}
    if "limit" in unknown:  # inspect's --limit (samples in all) is not this task's n (items per group)
        raise InputError("-T limit is not a task parameter", expected="-T n=N (eval items per group)",
                         fix="-T n=N, or `nla-audit eval --limit N` (the same), or inspect's --limit N (samples in all)")
    if unknown:
        raise InputError(f"unknown task parameter(s) {sorted(unknown)}", expected=params_doc())
    cfg = EvalConfig(**params)
    roles = _grader_roles(cfg)  # before the runner loads an SAE or merges an organism: no network is one line
    ds = spec.load(cfg.seed)
    runner = Runner(spec, ds, cfg)
    graders = ["probe"] if cfg.explainer == "probe" else (["embed", "model"] if cfg.grader == "both" else [cfg.grader])
    meta = {"task": spec.name, "kind": spec.kind, "explainer": cfg.explainer, "checkpoint": runner.subject.checkpoint,
            "model": runner.subject.model, "layer": runner.subject.layer, "av": runner.subject.av,
            "ar": runner.subject.ar,
            "dataset_version": ds.version, "dataset_seed": ds.seed, "n_eval": len(runner.eval_items),
            "n_train": len(runner.train_items), "graders": graders,
            "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens}
    return Task(dataset=[to_sample(it, spec) for it in runner.eval_items], solver=explain_activation(runner),
                scorer=[_make_scorer(g, spec)(runner) for g in graders], model_roles=roles, metadata=meta,
                version=spec.version)


def _grader_roles(cfg: EvalConfig) -> dict | None:
    if not cfg.uses_model_grader:
        return None
    if cfg.grader_model:
        if cfg.grader_model.startswith("anthropic/") and not os.environ.get("ANTHROPIC_API_KEY"):
            raise InputError(f"grader unavailable: {cfg.grader_model} needs ANTHROPIC_API_KEY, which is not set",
                             fix="export ANTHROPIC_API_KEY=..., or use the offline grader (-T grader=embed)")
        if cfg.grader_model.startswith("anthropic/"):  # `inspect eval` too: no network is one line, before any model
            from nla_audit.claude import check_reachable

            check_reachable(alternative="use the offline grader (-T grader=embed)")
        return {"grader": cfg.grader_model}
    if model_roles().get("grader") is None:
        raise InputError(f"grader unavailable: grader={cfg.grader} needs a model bound to the 'grader' role",
                         fix="pass --model-role grader=anthropic/claude-haiku-4-5 (or -T grader_model=...), "
                             "or use the offline grader (-T grader=embed)")
    return None


def to_sample(item: dict, spec: TaskSpec) -> Sample:
    if item.get("messages") is not None:
        role = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
        inp: Any = [role[m["role"]](content=m["content"]) for m in item["messages"]]
        if item.get("answer_prefix"):
            inp.append(ChatMessageAssistant(content=item["answer_prefix"] + "…"))
    else:
        inp = item["text"]
    from nla_audit.evals._graders import LETTERS

    return Sample(id=item["id"], input=inp, target=LETTERS[item["target"]], choices=list(item["options"]),
                  metadata={"group": item["group"], "question": item["question"],
                            "condition": item.get("meta", {}).get("condition"), "position": item.get("position")})


# ------------------------------------------------------------------------------------------- solver
@solver
def explain_activation(runner: Runner) -> Solver:
    """Explain the target's activation at the sample's position (or run the probe / the text reader)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        item = runner.by_id[str(state.sample_id)]
        rec = await runner.explain(item)
        state.store.set(STORE_KEY, rec)
        if "explanation" in rec:
            name = f"nla_audit/{runner.cfg.explainer}"
            state.messages.append(ChatMessageAssistant(content=rec["explanation"] or "(empty)", model=name))
            state.output = ModelOutput.from_content(model=name, content=rec["explanation"] or "")
        return state

    return solve


# ------------------------------------------------------------------------------------------- scorers
def _metrics(spec: TaskSpec) -> list:
    if spec.kind == "gap":
        return [condition_gap(), accuracy()]
    return [grouped(accuracy(), "group"), ci_wilson()]


def _make_scorer(grader: str, spec: TaskSpec):
    @scorer(metrics=_metrics(spec), name=f"{grader}_grader" if grader != "probe" else "probe")
    def choice_scorer(runner: Runner) -> Scorer:
        async def score(state: TaskState, target: Target) -> Score:
            import anyio

            item = runner.by_id[str(state.sample_id)]
            rec = state.store.get(STORE_KEY) or {}
            extra: dict[str, Any] = {}
            if grader == "probe":
                choice = rec.get("choice")
                extra["probe_scores"] = rec.get("probe_scores")
            elif grader == "embed":
                from nla_audit.evals._graders import embed_choice

                glosses = [spec.gloss(item, i) for i in range(len(item["options"]))]
                choice, sims = await anyio.to_thread.run_sync(embed_choice, rec.get("explanation", ""), glosses)
                extra["similarities"] = sims
            else:
                from nla_audit.evals._graders import model_choice

                choice, raw = await model_choice(rec.get("explanation", ""), item["question"], item["options"])
                extra["grader_output"] = raw[:200]
            return make_score(spec, item, choice, rec, extra)

        return score

    return choice_scorer


def make_score(spec: TaskSpec, item: dict, choice: int | None, rec: dict, extra: dict) -> Score:
    from nla_audit.evals._graders import LETTERS

    correct = choice == item["target"]
    value = float(choice == spec.positive) if spec.kind == "gap" else float(correct)
    meta = {"choice": choice, "target": item["target"], "correct": correct, "unparsed": choice is None,
            "chance": 0.0 if spec.kind == "gap" else 1.0 / len(item["options"]),
            "condition": item.get("meta", {}).get("condition"), **extra,
            **{k: rec.get(k) for k in ("fve_nrm", "position", "token", "shuffled_from", "answer") if k in rec}}
    if "answer" in rec and item.get("meta", {}).get("answer_letter"):
        meta["answered_correctly"] = rec["answer"].strip("() .") == item["meta"]["answer_letter"]
    expl = rec.get("explanation")
    return Score(value=value, answer=None if choice is None else LETTERS[choice],
                 explanation=None if expl is None else expl[:1500], metadata=meta)


@metric
def condition_gap() -> Metric:
    """P(score=1 | condition 'pos') − P(score=1 | condition 'neg'), with a bootstrap 95% interval."""

    def compute(scores: list[SampleScore]) -> Any:
        from nla_audit.evals._results import gap_with_ci

        def vals(cond: str) -> list[float]:
            return [float(s.score.value) for s in scores if (s.sample_metadata or {}).get("condition") == cond]

        return gap_with_ci(vals("pos"), vals("neg"))

    return compute
