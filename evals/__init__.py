"""nla_audit.evals: inspect-ai tasks scoring NLAs (``inspect eval nla_audit/<task>``, ``nla-audit eval``).

One sub-package per task (README.md in each): ``classification``, ``suffix_prediction``, ``user_modeling``,
``cot_hints``, ``sandbagging``; the task functions are ``nla_audit.evals.<task>.<task>`` and are all imported
by ``nla_audit.evals._registry`` (the inspect entry point). Importing this package loads nothing, so
``nla-audit`` starts fast.
"""

TASKS = ("classification", "suffix_prediction", "user_modeling", "cot_hints", "sandbagging")
