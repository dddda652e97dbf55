"""``nla_audit/classification``: pick a text's label (sentiment, topic, tense, language, animal class) from
the explanation of its last token alone."""

from __future__ import annotations

from pathlib import Path

from inspect_ai import Task, task

from nla_audit.evals._common import TaskSpec, build_task
from nla_audit.evals.classification import dataset, scorer

SPEC = TaskSpec(name="classification", version=dataset.VERSION, folder=Path(__file__).parent, build=dataset.build,
                gloss=scorer.gloss)


@task
def classification(**params) -> Task:
    """Task parameters: see ``nla_audit.evals._runner.EvalConfig`` (av, ar, explainer, grader, n, seed, ...)."""
    return build_task(SPEC, **params)
