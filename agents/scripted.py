"""A scripted auditor: a langchain chat model that replays a fixed plan of tool calls, then a report.

Offline there is no Claude, yet the auditor graph, the tools and the record should still run end to end on
the real target (``nla-audit audit --script plan.json``, the agent benchmark, the tests). The plan is a
JSON list of turns, each ``{"calls": [{"tool": NAME, "args": {...}}, ...]}`` or ``{"say": TEXT}``. It does
not read the tool results, so it measures the tools and the plumbing, never an auditor's judgement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from nla_audit.errors import InputError

EXHAUSTED = "(the script has no more turns)"


class ScriptedAuditor(BaseChatModel):
    """Replays ``turns`` in order, one per model call; after the last, says ``EXHAUSTED`` and so ends the run."""

    turns: list[dict]
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "nla-audit-scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedAuditor:
        return self  # the plan names the tools itself; the graph checks them when it runs them

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        turn = self.turns[self.position] if self.position < len(self.turns) else {"say": EXHAUSTED}
        self.position += 1
        calls = [{"name": c["tool"], "args": c.get("args", {}), "id": f"call_{self.position}_{i}", "type": "tool_call"}
                 for i, c in enumerate(turn.get("calls", []))]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=turn.get("say", ""), tool_calls=calls))])


def check_plan(turns: Any, source: str = "plan") -> list[dict]:
    """A list of turns each with a ``say`` text or a non-empty ``calls`` list of {tool, args}, or one clear line."""
    ok = isinstance(turns, list) and bool(turns)
    for t in turns if ok else []:
        calls = t.get("calls") if isinstance(t, dict) else None
        ok = ok and isinstance(t, dict) and (isinstance(t.get("say"), str) or (
            isinstance(calls, list) and bool(calls)
            and all(isinstance(c, dict) and isinstance(c.get("tool"), str) and isinstance(c.get("args", {}), dict)
                    for c in calls)))
    if not ok:
        raise InputError(f"{source} is not an auditor script",
                         expected='a non-empty JSON list of {"calls": [{"tool": NAME, "args": {...}}]} or {"say": TEXT}')
    return turns


def load_plan(path: str | Path) -> list[dict]:
    try:
        turns = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the script {path} ({type(exc).__name__})", expected="a JSON file") from None
    return check_plan(turns, str(path))
