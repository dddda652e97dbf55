"""The one Claude client (``nla_audit.claude``) on stub clients and a loopback API: no network, no real key.

Run: ``OMP_NUM_THREADS=1 pytest -q tests/unit/test_claude.py``
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
import uuid

import httpx
import pytest

from nla_audit.claude import ClaudeClient, ClaudeConfig, cache_key, check_reachable, require_claude
from nla_audit.errors import InputError
from tests.builders import closed_port

CANARY = "canary-" + uuid.uuid4().hex  # a fresh fake key per run: unique, so any leak is found; never a real key
FAST = dict(backoff_s=0.0, backoff_cap_s=0.0)  # no real waiting between retries


def _reply(text: str):
    return types.SimpleNamespace(content=[types.SimpleNamespace(text=text)])


def _status_error(cls_name: str, status: int):
    import anthropic

    request = httpx.Request("POST", "http://127.0.0.1/v1/messages")
    cls = getattr(anthropic, cls_name)
    return cls(f"Error code: {status}", response=httpx.Response(status, request=request), body=None)


def _connection_error():
    import anthropic

    return anthropic.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1/v1/messages"))


class StubClient:
    """An ``AsyncAnthropic`` stand-in: raises the scripted errors first, then answers ``reply``; counts calls."""

    def __init__(self, errors=(), reply="an answer"):
        self.errors, self.reply, self.calls, self.requests = list(errors), reply, 0, []
        self.in_flight = self.most_in_flight = 0
        self.messages = self

    async def create(self, **request):
        self.calls += 1
        self.requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if self.errors:
                raise self.errors.pop(0)
            return _reply(f"{self.reply}: {request['messages'][0]['content']}")
        finally:
            self.in_flight -= 1


def test_a_cache_hit_makes_no_second_call(tmp_path):
    stub = StubClient()
    client = ClaudeClient(ClaudeConfig(model="m"), tmp_path, client=stub)
    assert client.complete_many(["a", "b"]) == ["an answer: a", "an answer: b"] and stub.calls == 2
    again = ClaudeClient(ClaudeConfig(model="m"), tmp_path, client=stub)  # a rerun: a new client, the same folder
    assert again.complete_many(["b", "a"]) == ["an answer: b", "an answer: a"] and stub.calls == 2
    assert ClaudeClient(ClaudeConfig(model="m", temperature=0.0), tmp_path, client=stub).complete("a")
    assert stub.calls == 3  # other params, other entry
    assert not list(tmp_path.glob(".*.tmp"))  # written by rename: no temp file left behind


def test_the_cache_key_covers_model_system_prompt_and_params():
    base = cache_key("m", None, "p", {"max_tokens": 5})
    assert base == cache_key("m", None, "p", {"max_tokens": 5})
    others = [cache_key("n", None, "p", {"max_tokens": 5}), cache_key("m", "sys", "p", {"max_tokens": 5}),
              cache_key("m", None, "q", {"max_tokens": 5}), cache_key("m", None, "p", {"max_tokens": 6})]
    assert base not in others and len(set(others)) == 4


def test_the_system_prompt_and_params_are_sent(tmp_path):
    stub = StubClient()
    ClaudeClient(ClaudeConfig(model="m", system="be brief", max_tokens=7, temperature=0.5), None,
                 client=stub).complete("hi")
    (req,) = stub.requests
    assert req == {"model": "m", "system": "be brief", "max_tokens": 7, "extra_body": {"temperature": 0.5},
                   "messages": [{"role": "user", "content": "hi"}]}
    ClaudeClient(ClaudeConfig(temperature=None), None, client=stub).complete("hi")
    assert "extra_body" not in stub.requests[-1]


@pytest.mark.parametrize("error", ["RateLimitError", "OverloadedError", "InternalServerError", "connection"])
def test_a_retryable_error_is_retried_then_succeeds(tmp_path, error):
    exc = _connection_error() if error == "connection" else _status_error(error, 429 if "Rate" in error else 529)
    stub = StubClient(errors=[exc, exc])
    client = ClaudeClient(ClaudeConfig(max_retries=3, **FAST), tmp_path, client=stub)
    assert client.complete("x") == "an answer: x" and stub.calls == 3


def test_a_non_retryable_error_is_one_clear_line_and_not_retried(tmp_path):
    stub = StubClient(errors=[_status_error("AuthenticationError", 401)])
    client = ClaudeClient(ClaudeConfig(model="claude-x", max_retries=5, **FAST), tmp_path, client=stub)
    with pytest.raises(InputError) as info:
        client.complete_many(["x", "y"])
    msg = str(info.value)
    assert "AuthenticationError" in msg and "ANTHROPIC_API_KEY" in msg and "claude-x" in msg
    assert len(msg.splitlines()) == 1 and stub.calls <= 2  # no retries (the other prompt may have started)
    assert not list(tmp_path.iterdir()) or all("AuthenticationError" not in p.read_text() for p in tmp_path.iterdir())


def test_a_bug_in_the_client_is_not_disguised_as_an_api_error(tmp_path):
    stub = StubClient(errors=[KeyError("oops")])
    with pytest.raises(KeyError):
        ClaudeClient(ClaudeConfig(**FAST), tmp_path, client=stub).complete("x")


def test_spent_retries_on_a_network_failure_name_the_network(tmp_path):
    stub = StubClient(errors=[_connection_error()] * 3)
    client = ClaudeClient(ClaudeConfig(max_retries=2, **FAST), tmp_path, client=stub)
    with pytest.raises(InputError, match="cannot reach the Anthropic API after 3 attempt") as info:
        client.complete("x")
    assert "network" in str(info.value) and stub.calls == 3


def test_a_dropped_prompt_is_none_but_an_outage_is_an_error(tmp_path):
    busy = _status_error("RateLimitError", 429)
    stub = StubClient(errors=[busy] * 2)  # the first prompt's two attempts fail; the second prompt then succeeds
    client = ClaudeClient(ClaudeConfig(max_retries=1, concurrency=1, **FAST), tmp_path, client=stub)
    assert client.complete_many(["x", "y"]) == [None, "an answer: y"]
    stub = StubClient(errors=[_connection_error()] * 4)  # every request fails: an outage, not a dropped item
    client = ClaudeClient(ClaudeConfig(max_retries=1, concurrency=1, **FAST), tmp_path, client=stub)
    with pytest.raises(InputError, match="cannot reach the Anthropic API"):
        client.complete_many(["p", "q"])


def test_concurrency_is_bounded(tmp_path):
    stub = StubClient()
    ClaudeClient(ClaudeConfig(concurrency=3), tmp_path, client=stub).complete_many([str(i) for i in range(12)])
    assert stub.calls == 12 and stub.most_in_flight == 3


def test_missing_key_or_package_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(InputError, match="ANTHROPIC_API_KEY") as info:
        ClaudeClient(ClaudeConfig(), None, alternative="use --teacher offline")
    assert "export ANTHROPIC_API_KEY=" in str(info.value) and "--teacher offline" in str(info.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if not installed
    with pytest.raises(InputError, match="needs the anthropic package") as info:
        require_claude()
    assert "pip install" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_bad_config_is_an_input_error():
    with pytest.raises(InputError, match="concurrency"):
        ClaudeConfig(concurrency=0)


def test_an_unreachable_api_is_named_before_any_work(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(InputError, match=f"cannot reach the Anthropic API at 127.0.0.1:{port}") as info:
        check_reachable(alternative="use --labeller offline")
    assert "network" in str(info.value) and "--labeller offline" in str(info.value)


def messages_stub():
    """A loopback Messages API that answers every request with a label. Returns (url, seen, server)."""
    from tests.builders import messages_api

    return messages_api(lambda body: ([{"type": "text", "text": "<label>stub</label>"}], "end_turn"))


def test_the_key_goes_to_the_api_only_never_into_the_cache(tmp_path, monkeypatch):
    """The real SDK client against a loopback API: the key is sent, and no cache file holds it."""
    url, seen, server = messages_stub()
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    try:
        config = ClaudeConfig(model="claude-test", temperature=0.0, max_tokens=9)
        out = ClaudeClient(config, tmp_path / "cache").complete_many(["one", "two"])
    finally:
        server.shutdown()
    assert out == ["<label>stub</label>"] * 2 and len(seen) == 2
    assert all(CANARY in r["headers"].get("x-api-key", "") + r["headers"].get("authorization", "") for r in seen)
    assert all(r["body"]["temperature"] == 0.0 and r["body"]["max_tokens"] == 9 for r in seen)
    files = list((tmp_path / "cache").rglob("*"))
    assert len(files) == 2 and all(CANARY not in f.read_text() for f in files)


def test_cli_users_fail_fast_without_key_or_network(tmp_path, capsys, monkeypatch):
    """`sae label --labeller claude` and `datagen --teacher anthropic` say what is missing before any work (the
    paths given do not exist: reaching them would be a different error)."""
    from nla_audit.cli import main

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["datagen", "--data", str(tmp_path / "nope.parquet"), "--out-dir", str(tmp_path / "o"),
                 "--teacher", "anthropic"]) == 2
    err = capsys.readouterr().err
    assert "ANTHROPIC_API_KEY" in err and "--teacher offline" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    for argv, alt in ((["sae", "label", "--sae", str(tmp_path / "nope"), "--data", str(tmp_path / "x.parquet"),
                        "--labeller", "claude"], "--labeller offline"),
                      (["datagen", "--data", str(tmp_path / "nope.parquet"), "--out-dir", str(tmp_path / "o"),
                        "--teacher", "anthropic"], "--teacher offline")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot reach the Anthropic API" in err and alt in err and CANARY not in err
    assert not (tmp_path / "o").exists()


def test_caches_written_before_the_shared_client_are_still_read(tmp_path):
    """The teacher's and the labeller's old cache entries (keyed by text / model|prompt) cost no new call."""
    import hashlib

    from nla_audit.baselines.sae_labels import ClaudeLabeller
    from nla_audit.training.teacher import AnthropicTeacher

    stub = StubClient(reply="<analysis>\nfresh one\nfresh two\n</analysis>")
    teacher = AnthropicTeacher(cache_dir=tmp_path / "t", client=stub)
    old = tmp_path / "t" / (hashlib.sha256(b"old text").hexdigest() + ".json")
    old.write_text(json.dumps({"explanation": "cached\n\nbefore", "model": "m"}))
    assert teacher.explain_texts(["old text", "new text"]) == ["cached\n\nbefore", "fresh one\n\nfresh two"]
    assert stub.calls == 1
    labeller = ClaudeLabeller(model="m", cache_dir=tmp_path / "l", client=stub)
    ctx = [(1.0, "a cat sat on the mat")]
    prompt = labeller.prompt(ctx)
    (tmp_path / "l" / (hashlib.sha256(f"m|{prompt}".encode()).hexdigest() + ".json")).write_text(
        json.dumps({"label": "old label", "model": "m"}))
    assert labeller.label_all([ctx]) == ["old label"] and stub.calls == 1


def test_reachability_is_not_tested_directly_behind_a_proxy(monkeypatch):
    """Behind HTTPS_PROXY the SDK goes through the proxy; a direct connect would refuse a network that works."""
    from nla_audit.claude import check_reachable

    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert check_reachable(timeout=0.2) is None
