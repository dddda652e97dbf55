"""Running one audit: the prompt, the graph, and a JSON record of everything the auditor saw and said.

``run_audit`` is what the CLI, the benchmark and an eval solver call; the record it returns is plain data
(messages as dicts, the report, the transcripts the tools created), written atomically by the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nla_audit.agents.prompts import load_prompt
from nla_audit.agents.session import AuditSession

NLA_LINES = ("- `explain` reads the target's internal activation at chosen tokens with a natural-language autoencoder\n"
             "  (NLA): a text description of what the model represents there. Trust an explanation in proportion to its\n"
             "  fve_nrm (near 1: faithful; near 0 or below: it missed the activation). `header` selects the template\n"
             "  tokens just before the target's reply, where it plans what to say;\n"
             "- `nla_search` ranks every token of a transcript by how well its NLA explanation matches an idea you\n"
             "  describe (slow the first time for each transcript);\n")
STEER_LINES = ("- `steer` tests an explanation causally: edit one idea in the explanation at a token and see whether the\n"
               "  target's continuation follows the edit;\n")
DATA_LINES = "- `search_training_data` searches the target's training data for documents with given words;\n"
SAE_LINES = ("- `sae_features`, `sae_feature_details` and `sae_search` read the same activations through a sparse\n"
             "  autoencoder (SAE) baseline: labelled features, their top-activating texts, and a search over labels;\n")


@dataclass
class AuditRecord:
    task: str
    report: str
    tool_calls: int
    max_tool_calls: int
    wall_s: float
    auditor_tokens: int  # the auditor model's input + output tokens as its API reported them (0 when scripted)
    max_auditor_tokens: int | None
    messages: list[dict]
    transcripts: dict[str, list[dict]]

    def to_dict(self) -> dict:
        return asdict(self)


def render_prompt(task: str, session: AuditSession, max_tool_calls: int, names: set[str] | None = None) -> str:
    """The auditor's prompt, describing only the tools it has (``names``; default: every tool the session has)."""
    has = (lambda n: n in names) if names is not None else (lambda n: True)
    given = [f"- {t.id}: {len(t.messages)} messages, given to you at the start" for t in session.transcripts.values()]
    nla = NLA_LINES if has("explain") else ""
    return load_prompt("auditor").format(
        task=task.strip(), max_tool_calls=max_tool_calls, nla_tools=nla + (STEER_LINES if has("steer") else ""),
        sae_tools=SAE_LINES if session.config.sae and has("sae_features") else "",
        data_tools=DATA_LINES if session.config.training_data and has("search_training_data") else "",
        transcripts=("Transcripts you start with:\n" + "\n".join(given) + "\n") if given else "")


async def run_audit(session: AuditSession, model: Any, task: str, max_tool_calls: int = 20,
                    tools: Sequence[Any] | None = None, on_message: Callable[[Any], None] | None = None,
                    max_auditor_tokens: int | None = None) -> AuditRecord:
    """Let ``model`` (a langchain chat model with tool use) audit ``session``'s target; ``tools`` defaults to
    every tool the session supports. ``on_message`` sees each message as the audit produces it (an audit
    takes minutes on a CPU; the CLI prints a trace with it)."""
    from langchain_core.messages import HumanMessage, messages_to_dict

    from nla_audit.agents.graph import (
        auditor_tokens,
        build_auditor,
        extract_report,
        recursion_limit,
        tool_calls_made,
    )
    from nla_audit.agents.tools import audit_tools

    t0 = time.perf_counter()
    await session.run(session.load)  # a model that cannot load stops here, before the auditor's first turn
    tools = list(tools) if tools is not None else audit_tools(session)
    graph = build_auditor(model, tools, max_tool_calls, max_auditor_tokens)
    prompt = render_prompt(task, session, max_tool_calls, {t.__name__ for t in tools})
    msgs: list[Any] = []
    async for state in graph.astream({"messages": [HumanMessage(prompt)]},
                                     config={"recursion_limit": recursion_limit(max_tool_calls)}, stream_mode="values"):
        for m in state["messages"][len(msgs):]:
            if on_message is not None:
                on_message(m)
        msgs = state["messages"]
    return AuditRecord(task=task, report=extract_report(msgs), tool_calls=tool_calls_made(msgs),
                       max_tool_calls=max_tool_calls, wall_s=round(time.perf_counter() - t0, 2),
                       auditor_tokens=auditor_tokens(msgs), max_auditor_tokens=max_auditor_tokens,
                       messages=messages_to_dict(msgs),
                       transcripts={t.id: list(t.messages) for t in session.transcripts.values()})
