"""Sandbagging eval (implanted-trigger proxy): is safety named as the motive of a wrong answer (README.md)."""

from nla_audit.evals.sandbagging.task import sandbagging

__all__ = ["sandbagging"]
