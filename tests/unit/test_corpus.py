from __future__ import annotations

import pytest

from nla_audit.corpus import chunk_paragraphs, iter_documents
from nla_audit.default_corpus import pack_documents, split_fortunes
from nla_audit.errors import InputError
from tests.builders import write_jsonl


def test_jsonl_text_and_messages(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "hi"},
                                          {"id": "b", "messages": [{"role": "user", "content": "yo"}]}])
    docs = list(iter_documents(str(p)))
    assert [d.id for d in docs] == ["a", "b"] and docs[0].text == "hi" and docs[1].messages[0]["content"] == "yo"


def test_plain_text_is_chunked_by_paragraph(tmp_path):
    p = tmp_path / "book.txt"
    p.write_text("\n\n".join(["para " + "x" * 900] * 5), encoding="utf-8")
    docs = list(iter_documents(str(p)))
    assert len(docs) == 3 and docs[0].id == "book:0"
    assert chunk_paragraphs("a\n\nb") == ["a\n\nb"]


def test_non_utf8_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(InputError, match="not valid UTF-8"):
        list(iter_documents(str(p)))


def test_missing_and_malformed(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(iter_documents(str(tmp_path / "nope.jsonl")))
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match="neither 'text' nor 'messages'"):
        list(iter_documents(str(p)))


def test_fortune_parsing_and_packing():
    raw = "one\n%\ntwo\n  -- someone\n%\nthree\n"
    entries = split_fortunes(raw)
    assert entries == ["one", "two\n  -- someone", "three"]
    assert pack_documents(entries, max_chars=12) == ["one", "two\n  -- someone", "three"]
    assert pack_documents(entries, max_chars=1000) == ["one\n\ntwo\n  -- someone\n\nthree"]


def test_unknown_chat_role_is_one_clear_error(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "messages": [{"role": "robot", "content": "beep"}]}])
    with pytest.raises(InputError, match="unknown role 'robot'; expected system / user / assistant / tool"):
        list(iter_documents(str(p)))


def test_count_documents_gives_progress_a_total_when_cheap(tmp_path, monkeypatch):
    import nla_audit.corpus as corpus
    from tests.builders import write_jsonl

    path = write_jsonl(tmp_path / "c.jsonl", [{"text": f"doc {i}"} for i in range(5)])
    assert corpus.count_documents(str(path)) == 5 == len(list(corpus.iter_documents(str(path))))
    assert corpus.count_documents(str(tmp_path)) == 5  # a folder of corpus files
    assert corpus.count_documents("sharegpt") is None and corpus.count_documents("mix") is None
    assert corpus.count_documents(str(tmp_path / "missing.jsonl")) is None  # extraction reports it itself
    monkeypatch.setattr(corpus, "COUNT_LIMIT_BYTES", 8)
    assert corpus.count_documents(str(path)) is None  # too big to read twice
