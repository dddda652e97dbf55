"""Classification eval: labels from the explanation of the last token (see README.md)."""

from nla_audit.evals.classification.task import classification

__all__ = ["classification"]
