from __future__ import annotations

import pytest
import torch

from nla_audit.errors import InjectionError, SidecarError
from nla_audit.injection import (
    av_prompt_ids,
    build_token_meta,
    check_tokens,
    find_injection_sites,
    inject_rows,
    injecting,
    pick_injection_token,
)
from nla_audit.metrics import normalize
from nla_audit.sidecar import AV_TEMPLATE, TokenMeta

TOK = TokenMeta(injection_char="X", injection_token_id=9, injection_left_neighbor_id=4, injection_right_neighbor_id=5)


def test_sites_need_both_neighbours_and_are_row_major():
    ids = torch.tensor([[1, 4, 9, 5, 9, 5], [4, 9, 5, 0, 4, 9]])  # row1: last position never valid
    assert find_injection_sites(ids, TOK).tolist() == [[0, 2], [1, 1]]


def test_inject_rows_normalises_and_counts():
    emb = torch.zeros(1, 5, 3)
    sites = torch.tensor([[0, 2]])
    out = inject_rows(emb, sites, torch.tensor([[3.0, 4.0, 0.0]]), injection_scale=10.0)
    assert torch.allclose(out[0, 2], torch.tensor([6.0, 8.0, 0.0]))
    assert emb.abs().sum() == 0  # not in place
    with pytest.raises(InjectionError, match="2 vectors"):
        inject_rows(emb, sites, torch.ones(2, 3), 1.0)


def test_smollm2_fallback_picks_empty_output(tiny_target):
    char, tid, source = pick_injection_token(tiny_target.tokenizer)
    assert (char, tid, source) == ("<empty_output>", 16, "added-token-fallback")
    meta = build_token_meta(tiny_target.tokenizer)
    ids = av_prompt_ids(tiny_target.tokenizer, AV_TEMPLATE, char)
    p = ids.index(16)
    assert (ids[p - 1], ids[p + 1]) == (meta.injection_left_neighbor_id, meta.injection_right_neighbor_id)
    assert ids.count(tiny_target.tokenizer.bos_token_id) == 3  # ChatML turn markers only: no extra BOS


def test_template_drift_is_detected(tiny_target):
    meta = build_token_meta(tiny_target.tokenizer)
    check_tokens(tiny_target.tokenizer, meta, AV_TEMPLATE, "ok")
    drifted = AV_TEMPLATE.replace("<concept>{injection_char}</concept>", "[{injection_char}]")
    with pytest.raises(SidecarError, match="template drift"):
        check_tokens(tiny_target.tokenizer, meta, drifted, "test")
    wrong = TokenMeta("<empty_output>", 15, meta.injection_left_neighbor_id, meta.injection_right_neighbor_id)
    with pytest.raises(SidecarError, match="encodes to"):
        check_tokens(tiny_target.tokenizer, wrong, AV_TEMPLATE, "test")


def test_hook_injects_in_forward_and_gradient_reaches_vector(tiny_target):
    tok, model = tiny_target.tokenizer, tiny_target.model
    meta = build_token_meta(tok)
    ids = torch.tensor([av_prompt_ids(tok, AV_TEMPLATE, meta.injection_char)], device=model.device)
    v = torch.randn(1, 64, requires_grad=True)
    with injecting(model, meta, v, 5.0):
        out = model(ids).logits.sum()
    out.backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    with torch.no_grad():
        with injecting(model, meta, v.detach(), 5.0):
            a = model(ids).logits
        b = model(ids).logits
    assert not torch.allclose(a, b)
    assert torch.allclose(normalize(v.detach(), 5.0)[0].norm(), torch.tensor(5.0))


def test_hook_rejects_wrong_count(tiny_target):
    tok, model = tiny_target.tokenizer, tiny_target.model
    meta = build_token_meta(tok)
    ids = torch.tensor([av_prompt_ids(tok, AV_TEMPLATE, meta.injection_char)], device=model.device)
    with injecting(model, meta, torch.randn(2, 64), 5.0), pytest.raises(InjectionError):
        model(ids)
