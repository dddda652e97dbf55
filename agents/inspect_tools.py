"""The audit tools for inspect-ai: the same functions as ``tools.py``, as ``ToolDef``s for a solver or ``react()``.

inspect reads each tool's name, description and parameter docs from the function itself, as langgraph's
wrapper does, so the model sees the same instructions under either framework. ``AuditToolError`` becomes
inspect's ``ToolError``, which inspect reports to the model instead of failing the sample.
"""

from __future__ import annotations

from typing import Any

from nla_audit.agents.session import AuditSession
from nla_audit.agents.tools import AuditToolError, Tool, audit_tools, translate_errors


def inspect_tool(fn: Tool) -> Any:
    from inspect_ai.tool import ToolDef, ToolError

    return ToolDef(translate_errors(fn, AuditToolError, ToolError))


def inspect_tools(session: AuditSession) -> list[Any]:
    """Every tool the session supports, as inspect ``ToolDef``s (pass ``[t.as_tool() for t in ...]`` to ``react``).

    The tools share ``session``'s transcripts: build them per sample (inside the solver), or samples run
    concurrently will see each other's transcripts."""
    return [inspect_tool(t) for t in audit_tools(session)]
