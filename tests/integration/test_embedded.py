"""The real embedded SmolLM2-135M-Instruct: conversion, extraction, injection facts, and the shipped NLA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration


def test_embedded_model_facts(embedded_target):
    assert embedded_target.num_layers == 30 and embedded_target.d_model == 576
    from nla_audit.models import default_layer

    assert default_layer(embedded_target.num_layers) == 20


def test_extraction_matches_hidden_states_on_real_model(embedded_target, tmp_path):
    from nla_audit.corpus import iter_documents, tokenize_document
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.vectors import read_vectors

    docs = [d for _, d in zip(range(2), iter_documents("default"))]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    out = tmp_path / "a.parquet"
    extract_activations(ExtractConfig(out=str(out), corpus=str(corpus), positions_per_doc=3, max_length=256),
                        target=embedded_target, progress=False)
    vecs, cols = read_vectors(out, ["doc_id", "n_raw_tokens"])
    assert len(vecs) == 6
    ids = {d.id: tokenize_document(d, embedded_target.tokenizer, 256) for d in docs}
    for v, d, n in zip(vecs, cols["doc_id"], cols["n_raw_tokens"]):
        with torch.no_grad():
            hs = embedded_target.model(torch.tensor([ids[d][:n]]), output_hidden_states=True).hidden_states
        np.testing.assert_allclose(v, hs[21][0, -1].numpy(), atol=2e-3, rtol=1e-4)
        assert 100 < np.linalg.norm(v) < 1000  # position >= 50: no attention-sink outlier


def test_default_corpus_is_real_and_large():
    from nla_audit.corpus import iter_documents

    docs = list(iter_documents("default"))
    assert len(docs) > 2000
    cats = {d.id.split(":")[1] for d in docs}
    assert {"startrek", "literature", "songs-poems", "riddles"} <= cats


def test_injection_token_and_av_prompt(embedded_target):
    from nla_audit.injection import build_token_meta

    meta = build_token_meta(embedded_target.tokenizer)
    assert meta.injection_char == "<empty_output>" and meta.injection_token_id == 16
    assert (meta.injection_left_neighbor_id, meta.injection_right_neighbor_id) == (46, 9617)


def test_shipped_nla_explains_a_transcript(tmp_path):
    from nla_audit.paths import default_nla_dir

    if default_nla_dir() is None:
        pytest.skip("no default NLA shipped yet")
    from nla_audit.cli import main

    html = tmp_path / "t.html"
    assert main(["explain", "--text", "The cat sat on the mat because it was tired.", "--positions", "last",
                 "--max-new-tokens", "80", "--html", str(html)]) == 0
    assert "fve_nrm" in html.read_text()
