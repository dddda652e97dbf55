"""The auditor loop: tools over a tiny NLA + SAE, the langgraph loop driven by a scripted model, the tool budget,
errors the model can recover from, the inspect wrappers and target replies. The CLI is in test_agent_cli.py, the
root-cause tools (nla_search, search_training_data, sampling, steering, token budgets) in test_agent_tools.py;
fixtures in conftest.py, helpers in agent_helpers.py.

Run: pytest -q tests/unit/test_agents.py
"""

from __future__ import annotations

import asyncio
import re

import pytest
import torch

pytest.importorskip("langgraph")

from nla_audit.agents.run import run_audit
from nla_audit.agents.scripted import ScriptedAuditor, check_plan
from nla_audit.agents.session import AuditConfig, AuditSession
from nla_audit.agents.tools import AuditToolError, audit_tools, parse_positions
from nla_audit.errors import InputError
from tests.unit.agent_helpers import audit, call, session, tool_texts

# ------------------------------------------------------------------------------------------------- pure parts


def test_parse_positions():
    assert parse_positions("last", 10, 5) == [9]
    assert parse_positions("3, -1", 10, 5) == [3, 9]
    assert parse_positions("-3:", 10, 5) == [7, 8, 9]
    assert parse_positions("2:4,8,3", 10, 5) == [2, 3, 8]  # repeats dropped
    for bad, err, msg in (("10", InputError, "out of range"), ("-11", InputError, "out of range"),
                          ("x", InputError, "not understood"), ("5:2", InputError, "select none"),
                          ("0:6", AuditToolError, "at most 5")):
        with pytest.raises(err, match=msg):
            parse_positions(bad, 10, 5)


def test_check_plan_rejects_malformed_scripts():
    assert check_plan([{"say": "done"}, call("tokens", transcript_id="t0")])
    for bad in ([], {"say": "x"}, [{"calls": []}], [{"calls": [{"args": {}}]}], [{"calls": [{"tool": "x", "args": 1}]}]):
        with pytest.raises(InputError, match="not an auditor script"):
            check_plan(bad)


# ------------------------------------------------------------------------------------------------- the loop


def test_scripted_audit_runs_every_tool_on_the_target(nla_dirs, sae_dir, tiny_target):
    from nla_audit.chat import reply

    sess = session(nla_dirs, sae_dir)
    rec = audit(sess, [call("chat", message="Hello there", prefill="Sure"),
                       call("tokens", transcript_id="t0", start=-4),
                       call("explain", transcript_id="t0", positions="-3:-1"),
                       call("sae_features", transcript_id="t0", position=-2),
                       call("sae_feature_details", feature=0),
                       call("sae_search", query="ends"),
                       {"say": "thinking <report>the goal is X</report>"}])
    chat_out, toks, expl, feats, details, search = tool_texts(rec)
    want = reply(tiny_target, [{"role": "user", "content": "Hello there"}], prefill="Sure", max_new_tokens=6)
    cut = "" if want.finished else "\n[the reply was cut at 6 tokens]"
    assert chat_out == f"transcript t0\nreply: Sure{want.text}{cut}"
    assert rec.transcripts["t0"][-1] == {"role": "assistant", "content": "Sure" + want.text}
    n = len(sess.transcripts["t0"].ids)
    assert toks.startswith(f"t0: {n} tokens; showing 4") and f"{n - 1}: " in toks
    assert re.findall(r"^\[(\d+)\] .* fve_nrm ", expl, re.MULTILINE) == [str(n - 3), str(n - 2)]
    assert feats.startswith(f"[{n - 2}]") and "#" in feats
    assert details.startswith("#0 ") and "fires on" in details
    lines = search.splitlines()  # the offline labeller's labels read "ends in “word” ..."
    assert 1 <= len(lines) <= 10 and all(re.match(r"#\d+ .*ends", x) for x in lines)
    assert rec.report == "the goal is X" and rec.tool_calls == 6


def test_explanations_are_the_nla_s_own(nla_dirs):
    """The explain tool reports what `NLA.explain_vectors` says for the same activations (no reformatting loss)."""
    sess = session(nla_dirs)
    audit(sess, [call("chat", message="Tell me a story")])
    tr = sess.activations("t0")
    from nla_audit.chat_layout import chat_layout

    lay = chat_layout(sess.get_nla().target.tokenizer, tr.messages, 2048)
    last = max(p for p in range(len(tr.ids)) if not lay.control[p])  # "last": the reply's last token
    direct = sess.get_nla().explain_vectors(tr.acts[[last]], max_new_tokens=6, temperature=0.0, seed=0)[0]
    out = asyncio.run(audit_tools(sess)[2](transcript_id="t0", positions="last"))
    assert out.startswith(f"[{last}] ") and last < len(tr.ids) - 2
    assert out.endswith(direct.explanation.strip()) and f"fve_nrm {direct.fve_nrm:.2f}" in out


def test_budget_refuses_calls_past_it_and_asks_for_the_report(nla_dirs):
    rec = audit(session(nla_dirs), [call("chat", message="hi"), call("tokens", transcript_id="t0"),
                                    {"calls": [{"tool": "tokens", "args": {"transcript_id": "t0"}}] * 2},
                                    {"say": "<report>out of budget</report>"}], budget=3)
    texts = tool_texts(rec)
    assert len(texts) == 4 and texts[2].startswith("t0: ")  # the last turn's first call fits the budget: it runs
    assert texts[3].startswith("not run: this call is past the tool budget of 3 calls")
    assert rec.tool_calls == 3 and rec.report == "out of budget"


def test_tool_mistakes_go_back_to_the_model(nla_dirs):
    rec = audit(session(nla_dirs), [call("tokens", transcript_id="t0"), call("chat", message="hi"),
                                    call("explain", transcript_id="t0", positions="999"),
                                    call("explain", transcript_id="t7", positions="1"),
                                    call("sae_features", transcript_id="t0", position=1),
                                    call("explain", transcript_id="t0")])
    texts = tool_texts(rec)
    assert texts[0].startswith("error: no transcript 't0'") and "call chat first" in texts[0]
    assert texts[2].startswith("error: position 999 is out of range")
    assert texts[3].startswith("error: no transcript 't7'; known transcripts: t0")
    assert texts[4].startswith("error: there is no tool 'sae_features'; the tools are chat, tokens, explain")
    assert texts[5].startswith("error: malformed arguments") and "positions" in texts[5]
    assert rec.report == "(the script has no more turns)"


def test_chat_continues_a_transcript(nla_dirs):
    sess = session(nla_dirs)
    audit(sess, [call("chat", message="first", system="Be terse."), call("chat", message="second", continue_transcript="t0")])
    roles = [m["role"] for m in sess.transcripts["t1"].messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert sess.transcripts["t1"].messages[:3] == sess.transcripts["t0"].messages


def test_sae_of_another_site_is_refused(nla_dirs, tiny_model_dir, tmp_path):
    from nla_audit.baselines.sae_train import SAETrainConfig, train_sae
    from nla_audit.extract import ExtractConfig, extract_activations
    from tests.builders import text_corpus

    data = tmp_path / "l3.parquet"
    extract_activations(ExtractConfig(out=str(data), model=str(tiny_model_dir), corpus=str(text_corpus(tmp_path / "c.jsonl", 4)),
                                      layer=3, min_position=5, positions_per_doc=3), progress=False)
    train_sae(SAETrainConfig(data=(str(data),), out=str(tmp_path / "sae3"), expansion=2, k=4, steps=5, batch_size=8),
              progress=False)
    with pytest.raises(InputError, match="site mismatch"):
        session(nla_dirs, tmp_path / "sae3").get_sae()


# ------------------------------------------------------------------------------------------------- wrappers


def test_inspect_and_langgraph_wrappers_share_names_and_arguments(nla_dirs, sae_dir):
    from nla_audit.agents.graph import langchain_tool
    from nla_audit.agents.inspect_tools import inspect_tools

    sess = session(nla_dirs, sae_dir)
    ins, lc = inspect_tools(sess), [langchain_tool(t) for t in audit_tools(sess)]
    assert [t.name for t in ins] == [t.name for t in lc] == ["chat", "tokens", "explain", "steer", "nla_search", "sae_features",
                                                              "sae_feature_details", "sae_search"]
    for a, b in zip(ins, lc):
        assert list(a.parameters.properties) == list(b.args)
        assert a.description.split() == b.description.split()  # the same words; line breaks may differ
        assert all(a.parameters.properties[k].description == b.args[k]["description"] for k in b.args)


def test_inspect_tool_raises_inspect_tool_error(nla_dirs):
    from inspect_ai.tool import ToolError

    from nla_audit.agents.inspect_tools import inspect_tools

    tokens = inspect_tools(session(nla_dirs))[1]
    with pytest.raises(ToolError, match="no transcript 't3'"):
        asyncio.run(tokens.tool(transcript_id="t3"))


# ------------------------------------------------------------------------------------------------- replies


def test_reply_continues_the_prefill_after_the_generation_prompt(tiny_target):
    from nla_audit.chat import reply

    msgs = [{"role": "user", "content": "Count with me"}]
    tok = tiny_target.tokenizer
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + "Sure, one"
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = tiny_target.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=5, pad_token_id=tok.pad_token_id)
    got = reply(tiny_target, msgs, prefill="Sure, one", max_new_tokens=5)
    new = out[0, ids.shape[1]:]
    assert got.text == tok.decode(new, skip_special_tokens=True) and got.n_tokens == len(new)
    assert got.finished == (len(new) < 5 or int(new[-1]) == tok.eos_token_id)
    state = torch.random.get_rng_state()
    sampled = [reply(tiny_target, msgs, max_new_tokens=8, temperature=1.0, seed=s).text for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2] and torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("msgs,match", [([], "non-empty list"), ([{"role": "bot", "content": "x"}], "unknown role"),
                                        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                         "ends on a 'assistant' turn")])
def test_reply_rejects_bad_chats(tiny_target, msgs, match):
    from nla_audit.chat import reply

    with pytest.raises(InputError, match=match):
        reply(tiny_target, msgs)


def test_tools_do_not_need_a_graph(nla_dirs):
    """The tool functions are plain coroutines: usable from a notebook without langgraph or inspect."""
    sess = session(nla_dirs)
    out = asyncio.run(audit_tools(sess)[0](message="hello"))
    assert out.startswith("transcript t0") and torch.is_tensor(sess.activations("t0").acts)


def test_inspect_react_agent_uses_the_tools(nla_dirs, tmp_path):
    """The inspect wrappers inside inspect's own agent loop: a scripted mockllm calls chat, then explain, then
    submits; the tools run on the tiny target and their answers are in the sample's messages."""
    from inspect_ai import Task, eval
    from inspect_ai.agent import react
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    from nla_audit.agents.inspect_tools import inspect_tools

    plan = iter([("chat", {"message": "hi"}), ("explain", {"transcript_id": "t0", "positions": "last"}),
                 ("explain", {"transcript_id": "t5", "positions": "last"}), ("submit", {"answer": "nothing found"})])

    def next_call(messages, tools, tool_choice, config):
        name, args = next(plan)
        out = ModelOutput.for_tool_call("mockllm/model", name, args)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return out

    tools = [t.as_tool() for t in inspect_tools(session(nla_dirs))]
    task = Task(dataset=[Sample(input="audit the target")], solver=react(tools=tools))
    log = eval(task, model=get_model("mockllm/model", custom_outputs=next_call, memoize=False), display="none",
               log_dir=str(tmp_path))[0]
    assert log.status == "success"
    results = [m for m in log.samples[0].messages if m.role == "tool"]
    assert results[0].text.startswith("transcript t0") and "fve_nrm" in results[1].text
    assert results[2].error is not None and "no transcript 't5'" in results[2].error.message
    assert log.samples[0].output.completion.endswith("nothing found")


def test_a_model_that_cannot_load_stops_the_audit_before_the_auditor_speaks(nla_dirs, tmp_path):
    from nla_audit.errors import NLAAuditError

    auditor = ScriptedAuditor(turns=[call("chat", message="hi")])
    bad = AuditSession(AuditConfig(av=str(tmp_path / "missing"), ar=str(nla_dirs[1])))
    with pytest.raises(NLAAuditError):
        asyncio.run(run_audit(bad, auditor, "x"))
    assert auditor.position == 0


def test_the_prompt_describes_only_the_tools_given(nla_dirs):
    from nla_audit.agents.run import render_prompt

    sess = session(nla_dirs)
    full = render_prompt("x", sess, 5)
    assert "`explain`" in full and "`steer`" in full
    chat_only = render_prompt("x", sess, 5, {"chat", "tokens"})
    assert "`chat`" in chat_only and "`explain`" not in chat_only and "`steer`" not in chat_only


def test_session_load_names_each_model_it_loads(monkeypatch):
    import types

    from nla_audit.agents.session import AuditConfig, AuditSession

    seen = []
    session = AuditSession(AuditConfig(sae="some-sae"))
    monkeypatch.setattr(session, "get_nla", lambda: seen.append("nla") or types.SimpleNamespace(target="t"))
    monkeypatch.setattr(session, "get_sae", lambda: seen.append("sae"))
    advanced = []
    import nla_audit.progress as progress

    monkeypatch.setattr(progress.RateProgress, "advance", lambda self, n, **f: advanced.append(f["loaded"]))
    assert session.load(progress=True) is session
    assert advanced == ["NLA", "target", "SAE"] and seen == ["nla", "nla", "sae"]
