"""``nla_audit/user_modeling``: recover a user attribute (gender, occupation, nationality, religion) implied
indirectly in a chat, from the explanation of one token (the last token of the user's message)."""

from __future__ import annotations

from pathlib import Path

from inspect_ai import Task, task

from nla_audit.evals._common import TaskSpec, build_task
from nla_audit.evals.user_modeling import dataset, scorer

SPEC = TaskSpec(name="user_modeling", version=dataset.VERSION, folder=Path(__file__).parent, build=dataset.build,
                gloss=scorer.gloss)


@task
def user_modeling(**params) -> Task:
    """Task parameters: see ``nla_audit.evals._runner.EvalConfig`` (av, ar, explainer, grader, n, seed, ...)."""
    return build_task(SPEC, **params)
