"""``nla_audit/suffix_prediction``: pick the true ~32-token continuation of a text among 10 candidates from the
explanation of the prefix's last token alone (chance 10%)."""

from __future__ import annotations

from pathlib import Path

from inspect_ai import Task, task

from nla_audit.evals._common import TaskSpec, build_task
from nla_audit.evals.suffix_prediction import dataset, scorer

SPEC = TaskSpec(name="suffix_prediction", version=dataset.VERSION, folder=Path(__file__).parent,
                build=dataset.build, gloss=scorer.gloss, probe_kind="embedding")


@task
def suffix_prediction(**params) -> Task:
    """Task parameters: see ``nla_audit.evals._runner.EvalConfig`` (av, ar, explainer, grader, n, seed, ...)."""
    return build_task(SPEC, **params)
