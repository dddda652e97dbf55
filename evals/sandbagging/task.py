"""``nla_audit/sandbagging``: on a target implanted to answer wrongly after harmful intent, does the
explanation of its answer token name safety as the motive? Metric: P(says safety | harmful prefix) −
P(says safety | matched benign prefix). Needs the implanted target and an NLA trained on it (README.md)."""

from __future__ import annotations

from pathlib import Path

from inspect_ai import Task, task

from nla_audit.evals._common import TaskSpec, build_task
from nla_audit.evals.sandbagging import dataset, scorer

SPEC = TaskSpec(name="sandbagging", version=dataset.VERSION, folder=Path(__file__).parent, build=dataset.build,
                gloss=scorer.gloss, kind="gap", positive=0)


@task
def sandbagging(**params) -> Task:
    """Task parameters: see ``nla_audit.evals._runner.EvalConfig``; ``allow_base=true`` runs the dataset on a
    target without the implant (a negative control)."""
    return build_task(SPEC, **params)
