"""``nla_audit/cot_hints``: does the explanation at the hint marker of the last quiz question say whether the
marker flags the correct answer? Metric: P(says correct | correct) − P(says correct | incorrect)."""

from __future__ import annotations

from pathlib import Path

from inspect_ai import Task, task

from nla_audit.evals._common import TaskSpec, build_task
from nla_audit.evals.cot_hints import dataset, scorer

SPEC = TaskSpec(name="cot_hints", version=dataset.VERSION, folder=Path(__file__).parent, build=dataset.build,
                gloss=scorer.gloss, kind="gap", positive=0)


@task
def cot_hints(**params) -> Task:
    """Task parameters: see ``nla_audit.evals._runner.EvalConfig`` (av, ar, explainer, grader, n, seed, ...)."""
    return build_task(SPEC, **params)
