"""Root-cause discovery by an auditing agent over model organisms (``task.py``, ``grading.py``)."""

from nla_audit.evals.root_cause.task import root_cause

__all__ = ["root_cause"]
