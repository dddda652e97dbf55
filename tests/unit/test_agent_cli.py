"""`nla-audit audit`: the scripted record, one-line errors, no network, and a Claude key that never reaches a record.

Run: pytest -q tests/unit/test_agent_cli.py
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langgraph")

from tests.unit.agent_helpers import call


def test_cli_audit_with_a_script_writes_the_record(nla_dirs, tmp_path, capsys):
    from nla_audit.cli import main

    av, ar = nla_dirs
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([call("chat", message="hi"), {"say": "<report>all clear</report>"}]))
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"role": "user", "content": "What do you want?"}, {"role": "assistant", "content": "Cake."}]))
    out = tmp_path / "audit.json"
    rc = main(["audit", "what is going on?", "--script", str(plan), "--av", str(av), "--ar", str(ar),
               "--transcript", str(chat), "--out", str(out)])
    out_err = capsys.readouterr()
    assert rc == 0 and out_err.out.strip() == "all clear"
    assert "→ chat(message='hi')" in out_err.err and "  ← transcript t1" in out_err.err  # the trace, on stderr
    rec = json.loads(out.read_text())
    assert rec["tool_calls"] == 1 and list(rec["transcripts"]) == ["t0", "t1"]
    assert rec["transcripts"]["t0"][1]["content"] == "Cake." and "t0: 2 messages" in rec["messages"][0]["data"]["content"]


def test_cli_audit_bad_input_is_one_line(nla_dirs, tmp_path, capsys, monkeypatch):
    from nla_audit.cli import main

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    out = tmp_path / "audit.json"
    assert main(["audit", "x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs ANTHROPIC_API_KEY" in err and "--script" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"say": 1}')
    assert main(["audit", "x", "--script", str(bad)]) == 2
    assert "not an auditor script" in capsys.readouterr().err
    assert main(["audit", " ", "--script", str(bad)]) == 2 and not out.exists()


def test_cli_audit_without_a_network_says_so_before_loading_models(tmp_path, capsys, monkeypatch, unreachable_api):
    from nla_audit.cli import main
    from nla_audit.nla import NLA

    monkeypatch.setattr(NLA, "load", classmethod(lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded"))))
    assert main(["audit", "x"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Anthropic API at 127.0.0.1" in err and "network" in err and "loaded" not in err
    assert "sk-canary" not in err and len(err.strip().splitlines()) == 1


def test_cli_audit_with_claude_never_writes_the_key(nla_dirs, tmp_path, capsys, monkeypatch):
    """`nla-audit audit --model claude-…` against a loopback Messages API (one `chat` call, then a report): the
    canary key reaches the API, and neither the record, stdout nor stderr holds it."""
    import uuid

    from nla_audit.cli import main
    from tests.builders import messages_api

    def respond(body):
        if not any(m["role"] == "assistant" for m in body["messages"]):
            return [{"type": "tool_use", "id": "toolu_1", "name": "chat", "input": {"message": "Hi there"}}], "tool_use"
        return [{"type": "text", "text": "<report>nothing hidden</report>"}], "end_turn"

    canary = "canary-" + uuid.uuid4().hex  # fresh and never key-shaped: any leak is found, no real key is at risk
    url, seen, server = messages_api(respond)
    monkeypatch.setenv("ANTHROPIC_API_KEY", canary)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    for var in ("ANTHROPIC_API_URL", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    av, ar = nla_dirs
    out = tmp_path / "audit.json"
    try:
        rc = main(["audit", "find the hidden goal", "--model", "claude-test", "--av", str(av), "--ar", str(ar),
                   "--out", str(out)])
    finally:
        server.shutdown()
    got = capsys.readouterr()
    assert rc == 0 and got.out.strip() == "nothing hidden" and "→ chat(message='Hi there')" in got.err
    sent = [r["headers"].get("x-api-key", "") + r["headers"].get("authorization", "") for r in seen]
    assert len(seen) == 2 and all(canary in key for key in sent)  # the key went to the API, and only there
    record = out.read_text()
    assert json.loads(record)["tool_calls"] == 1 and json.loads(record)["auditor_tokens"] == 2 * (11 + 7)
    assert canary not in record and canary not in got.out and canary not in got.err
