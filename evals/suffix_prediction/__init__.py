"""Suffix-prediction eval: the true continuation among 10, from one explanation (see README.md)."""

from nla_audit.evals.suffix_prediction.task import suffix_prediction

__all__ = ["suffix_prediction"]
