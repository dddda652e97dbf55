"""Errors a user (or a model driving a tool) can cause.

Every message says what was wrong, what was expected and how to fix it, in one line, so the CLI can print
it without a traceback (see ``nla_audit.cli``). ``assert`` is kept for the impossible only.
"""

from __future__ import annotations


class NLAAuditError(Exception):
    """Base class: a user-facing error whose message is one self-explaining line."""

    exit_code = 2

    def __init__(self, what: str, *, expected: str | None = None, fix: str | None = None) -> None:
        parts = [what]
        if expected:
            parts.append(f"expected {expected}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(parts))


class InputError(NLAAuditError):
    """A file, argument or corpus the user gave is unusable."""


class ModelLoadError(NLAAuditError):
    """A model path or id cannot be loaded (missing, offline, malformed)."""


class SidecarError(NLAAuditError):
    """An ``nla_meta.yaml`` sidecar is missing, malformed or disagrees with the live model/tokenizer."""


class InjectionError(NLAAuditError):
    """The injection site in a tokenized AV prompt is missing, duplicated or has drifted neighbours."""


class ConfigError(NLAAuditError):
    """A run config has unknown keys or invalid values."""
