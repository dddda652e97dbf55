"""inspect-ai registry (entry point ``nla_audit``): ``inspect eval nla_audit/<task>``.

Import-light: the task modules import inspect_ai and ``nla_audit.evals._common`` only; torch, transformers and
the models are loaded when a task runs (tests/evals checks this).
"""

from nla_audit.evals.classification import classification
from nla_audit.evals.cot_hints import cot_hints
from nla_audit.evals.root_cause import root_cause
from nla_audit.evals.sandbagging import sandbagging
from nla_audit.evals.suffix_prediction import suffix_prediction
from nla_audit.evals.user_modeling import user_modeling

TASKS = ("classification", "suffix_prediction", "user_modeling", "cot_hints", "sandbagging")  # explain-a-token tasks
AUDIT_TASKS = ("root_cause",)  # an auditing agent over model organisms

__all__ = ["classification", "cot_hints", "root_cause", "sandbagging", "suffix_prediction", "user_modeling", "TASKS",
           "AUDIT_TASKS"]
