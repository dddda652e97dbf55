"""Helpers shared by the auditor tests (test_agents, test_agent_cli, test_agent_tools): a session over the tiny
NLA, a scripted audit, one scripted tool call, and the tool messages of a record."""

from __future__ import annotations

import asyncio

from nla_audit.agents.run import run_audit
from nla_audit.agents.scripted import ScriptedAuditor
from nla_audit.agents.session import AuditConfig, AuditSession


def session(nla_dirs, sae=None, **kw) -> AuditSession:
    av, ar = nla_dirs
    return AuditSession(AuditConfig(av=str(av), ar=str(ar), sae=None if sae is None else str(sae),
                                    explain_max_new_tokens=6, reply_max_new_tokens=6, **kw))


def audit(sess, turns, budget=10):
    return asyncio.run(run_audit(sess, ScriptedAuditor(turns=turns), "find the hidden goal", budget))


def call(tool, **args):
    return {"calls": [{"tool": tool, "args": args}]}


def tool_texts(record) -> list[str]:
    return [m["data"]["content"] for m in record.messages if m["type"] == "tool"]
