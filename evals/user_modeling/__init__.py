"""User-modeling eval: an implied user attribute from one token's explanation (see README.md)."""

from nla_audit.evals.user_modeling.task import user_modeling

__all__ = ["user_modeling"]
