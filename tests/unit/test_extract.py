from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from nla_audit.errors import InputError
from nla_audit.extract import ExtractConfig, extract_activations, sample_positions, text_activations
from nla_audit.sidecar import read_dataset_sidecar
from nla_audit.vectors import read_vectors
from tests.builders import text_corpus, write_jsonl


def test_extracted_vector_equals_hidden_states_k_plus_1(tiny_target, tmp_path):
    corpus = text_corpus(tmp_path / "c.jsonl", n_docs=3)
    out = tmp_path / "a.parquet"
    res = extract_activations(ExtractConfig(out=str(out), corpus=str(corpus), layer=2, min_position=5,
                                            positions_per_doc=4, batch_size=2), target=tiny_target, progress=False)
    vecs, cols = read_vectors(out, ["doc_id", "n_raw_tokens"])
    assert res.rows == len(vecs) == 12
    tok = tiny_target.tokenizer
    from nla_audit.corpus import iter_documents, tokenize_document

    docs = {d.id: tokenize_document(d, tok, 1024) for d in iter_documents(str(corpus))}
    for v, doc_id, n in zip(vecs, cols["doc_id"], cols["n_raw_tokens"]):
        ids = torch.tensor([docs[doc_id]])
        with torch.no_grad():
            hs = tiny_target.model(ids, output_hidden_states=True).hidden_states
        np.testing.assert_allclose(v, hs[3][0, n - 1].numpy(), atol=1e-4)  # K=2 → hidden_states[3]


def test_parquet_schema_and_sidecar(tiny_target, tmp_path):
    corpus = text_corpus(tmp_path / "c.jsonl", n_docs=2)
    out = tmp_path / "a.parquet"
    extract_activations(ExtractConfig(out=str(out), corpus=str(corpus), layer=1, min_position=5), target=tiny_target,
                        progress=False)
    schema = pq.read_schema(out)
    assert str(schema.field("activation_vector").type) == "fixed_size_list<element: float>[64]"
    assert set(schema.names) >= {"doc_id", "n_raw_tokens", "detokenized_text_truncated", "activation_layer"}
    meta = read_dataset_sidecar(out)
    assert meta["extraction"]["layer_index"] == 1 and meta["extraction"]["d_model"] == 64
    assert meta["extraction"]["norm"] == "none" and meta["row_count"] == 20


def test_default_layer_is_two_thirds(tiny_target, tmp_path):
    out = tmp_path / "a.parquet"
    res = extract_activations(ExtractConfig(out=str(out), corpus=str(text_corpus(tmp_path / "c.jsonl", 1)),
                                            min_position=5), target=tiny_target, progress=False)
    assert res.layer == (2 * 4) // 3


def test_positions_are_per_document_and_seeded():
    ids = list(range(100, 200))
    a = sample_positions(ids, set(), 50, 5, 42, "doc-a")
    assert a == sample_positions(ids, set(), 50, 5, 42, "doc-a")
    assert a != sample_positions(ids, set(), 50, 5, 42, "doc-b")
    assert all(p >= 50 for p in a) and len(set(a)) == 5


def test_positions_skip_specials_and_sink():
    ids = [1, 5, 2, 7, 8, 2]
    assert sample_positions(ids, {1, 2}, 0, 10, 0, "d", all_positions=True) == [1, 3, 4]


def test_chat_transcripts_use_chat_template(tiny_target, tmp_path):
    corpus = write_jsonl(tmp_path / "chat.jsonl", [{"id": "c1", "messages": [
        {"role": "user", "content": "Hello there, how are you today my friend?"},
        {"role": "assistant", "content": "I am well, thank you for asking so kindly."}]}])
    out = tmp_path / "a.parquet"
    extract_activations(ExtractConfig(out=str(out), corpus=str(corpus), layer=1, min_position=1, all_positions=True),
                        target=tiny_target, progress=False)
    _, cols = read_vectors(out, ["detokenized_text_truncated"])
    assert any("assistant" in t for t in cols["detokenized_text_truncated"])  # rendered with the ChatML template


def test_short_documents_error_and_leave_nothing(tiny_target, tmp_path):
    corpus = write_jsonl(tmp_path / "s.jsonl", [{"id": "x", "text": "too short"}])
    out = tmp_path / "a.parquet"
    with pytest.raises(InputError, match="min-position"):
        extract_activations(ExtractConfig(out=str(out), corpus=str(corpus), layer=1), target=tiny_target, progress=False)
    assert list(tmp_path.iterdir()) == [corpus]


def test_text_activations_matches_extraction(tiny_target):
    ids = tiny_target.tokenizer("a b c d e f g").input_ids
    acts = text_activations(tiny_target, 2, ids)
    with torch.no_grad():
        hs = tiny_target.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts, hs[3][0], atol=1e-4, rtol=1e-4)
    # The last block is the exception: HF's hidden_states[-1] is *after* the final norm; the hook is not.
    last = text_activations(tiny_target, 3, ids)
    assert not torch.allclose(last, hs[4][0], atol=1e-3)
