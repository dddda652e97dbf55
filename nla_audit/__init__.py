"""nla_audit: Natural Language Autoencoders (NLAs) for auditing language models.

``import nla_audit`` stays light (no torch/transformers import): the public names below are resolved lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ActivationVerbalizer": "nla_audit.av",
    "ActivationReconstructor": "nla_audit.ar",
    "Explanation": "nla_audit.av",
    "extract_activations": "nla_audit.extract",
    "ExtractConfig": "nla_audit.extract",
    "load_target": "nla_audit.models",
    "NLAAuditError": "nla_audit.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nla_audit' has no attribute {name!r}")
