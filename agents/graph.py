"""The auditor as a langgraph graph: nodes and edges only; the tools' logic lives in ``tools.py``.

    START → auditor ─(tool calls)→ tools ─(budget left)→ auditor
                    │                    └─(a call refused for budget)→ report → END
                    └─(no tool call)→ END

``tools`` runs a turn's calls one after another while the budget lasts and answers the rest "budget spent"
(every tool call must get a result before the model speaks again); ``report`` then gives the model one last
turn to write its report. An unknown tool or malformed arguments come back to the model as an error answer.
The recursion limit is set from the budget, so a model that never stops calling tools ends at the budget,
not at langgraph's default of 25 steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import StructuredTool, ToolException
from langgraph.graph import END, START, StateGraph

from nla_audit.agents.state import AuditState
from nla_audit.agents.tools import AuditToolError, Tool, translate_errors

BUDGET_SPENT = "not run: this call is past the tool budget of {n} calls. Write your final <report> now."
TOKENS_SPENT = ("not run: the auditor has used {used} of its {n} tokens. Write your final <report> now, "
                "briefly.")
REFUSED = "budget"
REPORT_RE = re.compile(r"<report>(.*?)</report>", re.DOTALL)
OPEN_REPORT_RE = re.compile(r".*<report>(.*?)(?:</report>|$)", re.DOTALL)


def langchain_tool(fn: Tool) -> StructuredTool:
    """One audit tool as a langchain tool: the name, description and argument docs langchain parses from ``fn``;
    ``AuditToolError`` goes back to the model as the tool's answer."""
    parsed = StructuredTool.from_function(coroutine=fn, parse_docstring=True)
    call = translate_errors(fn, AuditToolError, lambda msg: ToolException(f"error: {msg}"))
    return StructuredTool.from_function(coroutine=call, name=parsed.name, description=parsed.description,
                                        args_schema=parsed.args_schema, handle_tool_error=True,
                                        handle_validation_error=_bad_arguments)


def _bad_arguments(exc: Exception) -> str:
    """Pydantic's per-field complaints ("positions: Field required"), without its documentation links."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    what = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors) or str(exc)[:200]
    return f"error: malformed arguments ({what}); see the tool's argument list"


def tool_calls_made(messages: Sequence[Any]) -> int:
    """Tool calls that ran (refusals for lack of budget carry ``artifact="budget"`` and do not count)."""
    return sum(isinstance(m, ToolMessage) and m.artifact != REFUSED for m in messages)


def auditor_tokens(messages: Sequence[Any]) -> int:
    """Input + output tokens the auditor model has reported so far (``usage_metadata``; 0 for models that report
    none, such as the scripted auditor)."""
    return sum(int((getattr(m, "usage_metadata", None) or {}).get("total_tokens", 0))
               for m in messages if isinstance(m, AIMessage))


def build_auditor(model: Any, tools: Sequence[Tool], max_tool_calls: int, max_tokens: int | None = None):
    """A compiled graph: ``model`` is a langchain chat model with ``bind_tools`` (``ChatAnthropic`` in use).
    ``max_tokens`` caps the auditor's own token use (input + output, as its API reports it): past it, the turn's
    tool calls are refused and the model writes its report."""
    lc_tools = {t.name: t for t in map(langchain_tool, tools)}
    bound = model.bind_tools(list(lc_tools.values()))

    async def auditor(state: AuditState) -> dict:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    async def run_tools(state: AuditState) -> dict:
        left = max_tool_calls - tool_calls_made(state["messages"])
        used = auditor_tokens(state["messages"])
        why = BUDGET_SPENT.format(n=max_tool_calls)
        if max_tokens is not None and used >= max_tokens:
            left, why = 0, TOKENS_SPENT.format(used=used, n=max_tokens)
        out = []
        for i, call in enumerate(state["messages"][-1].tool_calls):
            if i >= left:
                out.append(ToolMessage(why, tool_call_id=call["id"], name=call["name"], artifact=REFUSED))
            elif call["name"] not in lc_tools:
                out.append(ToolMessage(f"error: there is no tool {call['name']!r}; the tools are {', '.join(lc_tools)}",
                                       tool_call_id=call["id"], name=call["name"], status="error"))
            else:
                out.append(await lc_tools[call["name"]].ainvoke({**call, "type": "tool_call"}))
        return {"messages": out}

    def after_auditor(state: AuditState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    def after_tools(state: AuditState) -> str:
        return "report" if isinstance(state["messages"][-1], ToolMessage) and state["messages"][-1].artifact == REFUSED \
            else "auditor"

    g = StateGraph(AuditState)
    g.add_node("auditor", auditor)
    g.add_node("tools", run_tools)
    g.add_node("report", auditor)
    g.add_edge(START, "auditor")
    g.add_conditional_edges("auditor", after_auditor, ["tools", END])
    g.add_conditional_edges("tools", after_tools, ["auditor", "report"])
    g.add_edge("report", END)
    return g.compile()


def recursion_limit(max_tool_calls: int) -> int:
    """Graph steps the budget can need: auditor + tools per call (a call per turn at worst), plus the ending."""
    return 2 * max_tool_calls + 6


def extract_report(messages: Sequence[Any]) -> str:
    """The text inside the last <report>…</report>; in the auditor's final message an unclosed <report> counts
    too (a reply cut at its token cap). Without tags: the auditor's last words."""
    texts = [_text(m) for m in messages if isinstance(m, AIMessage)]
    if texts and (found := OPEN_REPORT_RE.search(texts[-1])):
        return found.group(1).strip()
    for t in reversed(texts):
        if found := REPORT_RE.search(t):
            return found.group(1).strip()
    return next((t.strip() for t in reversed(texts) if t.strip()), "")


def _text(m: AIMessage) -> str:
    if isinstance(m.content, str):
        return m.content
    return "".join(b.get("text", "") for b in m.content if isinstance(b, dict) and b.get("type") == "text")
