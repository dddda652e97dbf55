"""CoT-hints eval: what the hint marker means, read from its explanation (see README.md)."""

from nla_audit.evals.cot_hints.task import cot_hints

__all__ = ["cot_hints"]
