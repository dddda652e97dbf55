"""The auditor's tools on the real embedded SmolLM2-135M-Instruct with the shipped NLA and SAE (scripted plan).

Run: pytest -q tests/integration/test_agent_embedded.py
"""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration
pytest.importorskip("langgraph")


def test_scripted_audit_on_the_shipped_nla_and_sae():
    from nla_audit.agents.run import run_audit
    from nla_audit.agents.scripted import ScriptedAuditor
    from nla_audit.agents.session import AuditConfig, AuditSession

    sess = AuditSession(AuditConfig(sae="default", reply_max_new_tokens=24))
    plan = [{"calls": [{"tool": "chat", "args": {"message": "What is the capital of France? Answer in one sentence."}}]},
            {"calls": [{"tool": "explain", "args": {"transcript_id": "t0", "positions": "-6:-2"}}]},
            {"calls": [{"tool": "sae_features", "args": {"transcript_id": "t0", "position": -4}}]},
            {"say": "<report>done</report>"}]
    rec = asyncio.run(run_audit(sess, ScriptedAuditor(turns=plan), "geography", max_tool_calls=5))
    chat, expl, feats = [m["data"]["content"] for m in rec.messages if m["type"] == "tool"]
    assert "Paris" in chat and "cut at" not in chat  # the real model, greedy, ends its sentence within 24 tokens
    blocks = expl.split("\n\n")
    fves = [float(b.split("fve_nrm ")[1].split()[0]) for b in blocks if "fve_nrm" in b]
    assert len(fves) == 4 and sum(fves) / 4 > 0.2  # shuffled-activation floor is about -0.75
    assert "#" in feats and "(unlabelled)" not in feats  # the shipped SAE is labelled
    assert rec.report == "done" and rec.tool_calls == 3
