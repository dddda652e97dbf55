"""The auditor graph's state: the conversation with the auditing model, and nothing else.

The tool budget is counted from the ``ToolMessage``s in ``messages`` (one per executed call), so there is a
single source of truth for what the auditor did, and a saved transcript replays into the same state.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


class AuditState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
