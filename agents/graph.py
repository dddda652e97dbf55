"""The auditor as a langgraph graph: nodes and edges only; the tools' logic lives in ``tools.py``.

    START → auditor ─(tool calls, budget left)→ tools → auditor
                    ─(tool calls, budget spent)→ refuse → report → END
                    ─(no tool call)→ END

``refuse`` answers each pending call with "budget spent" (every tool call must get a result before the
model speaks again) and ``report`` gives the model one last turn to write its report. The recursion limit
is set from the budget, so a model that never stops calling tools ends at the budget, not at langgraph's
default of 25 steps (ecosystem.md §3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import StructuredTool, ToolException
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from nla_audit.agents.state import AuditState
from nla_audit.agents.tools import AuditToolError, Tool

BUDGET_SPENT = "not run: the tool budget of {n} calls is spent. Write your final <report> now."
REFUSED = "budget"
REPORT_RE = re.compile(r"<report>(.*?)(?:</report>|$)", re.DOTALL)


def langchain_tool(fn: Tool) -> StructuredTool:
    """One audit tool as a langchain tool: the name, description and argument docs langchain parses from ``fn``;
    ``AuditToolError`` goes back to the model as the tool's answer."""
    parsed = StructuredTool.from_function(coroutine=fn, parse_docstring=True)

    async def call(**kwargs: Any) -> str:
        try:
            return await fn(**kwargs)
        except AuditToolError as exc:
            raise ToolException(f"error: {exc}") from None

    return StructuredTool.from_function(coroutine=call, name=parsed.name, description=parsed.description,
                                        args_schema=parsed.args_schema, handle_tool_error=True)


def tool_calls_made(messages: Sequence[Any]) -> int:
    """Tool calls that ran (refusals for lack of budget carry ``artifact="budget"`` and do not count)."""
    return sum(isinstance(m, ToolMessage) and m.artifact != REFUSED for m in messages)


def build_auditor(model: Any, tools: Sequence[Tool], max_tool_calls: int):
    """A compiled graph: ``model`` is a langchain chat model with ``bind_tools`` (``ChatAnthropic`` in use)."""
    lc_tools = [langchain_tool(t) for t in tools]
    bound = model.bind_tools(lc_tools)

    async def auditor(state: AuditState) -> dict:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    def refuse(state: AuditState) -> dict:
        calls = state["messages"][-1].tool_calls
        return {"messages": [ToolMessage(BUDGET_SPENT.format(n=max_tool_calls), tool_call_id=c["id"], name=c["name"],
                                         artifact=REFUSED)
                             for c in calls]}

    def route(state: AuditState) -> str:
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or not last.tool_calls:
            return END
        over = tool_calls_made(state["messages"]) + len(last.tool_calls) > max_tool_calls
        return "refuse" if over else "tools"

    g = StateGraph(AuditState)
    g.add_node("auditor", auditor)
    g.add_node("tools", ToolNode(lc_tools))
    g.add_node("refuse", refuse)
    g.add_node("report", auditor)
    g.add_edge(START, "auditor")
    g.add_conditional_edges("auditor", route, ["tools", "refuse", END])
    g.add_edge("tools", "auditor")
    g.add_edge("refuse", "report")
    g.add_edge("report", END)
    return g.compile()


def recursion_limit(max_tool_calls: int) -> int:
    """Graph steps the budget can need: auditor + tools per call (a call per turn at worst), plus the ending."""
    return 2 * max_tool_calls + 6


def extract_report(messages: Sequence[Any]) -> str:
    """The text inside the last <report> tags, or the auditor's last words when it used none."""
    texts = [_text(m) for m in messages if isinstance(m, AIMessage)]
    for t in reversed(texts):
        found = REPORT_RE.search(t)
        if found:
            return found.group(1).strip()
    return next((t.strip() for t in reversed(texts) if t.strip()), "")


def _text(m: AIMessage) -> str:
    if isinstance(m.content, str):
        return m.content
    return "".join(b.get("text", "") for b in m.content if isinstance(b, dict) and b.get("type") == "text")
