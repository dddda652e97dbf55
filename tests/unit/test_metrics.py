from __future__ import annotations

import math

import pytest
import torch

from nla_audit.metrics import baselines, cosine, fve_nrm, mse_nrm, normalize


def test_mse_nrm_is_two_one_minus_cos_at_sqrt_d():
    a, b = torch.randn(10, 32), torch.randn(10, 32)
    torch.testing.assert_close(mse_nrm(a, b, math.sqrt(32)), 2 * (1 - cosine(a, b)), atol=1e-5, rtol=1e-5)


def test_mse_ignores_magnitude_and_orthogonal_scores_two():
    a = torch.tensor([[1.0, 0.0]])
    assert mse_nrm(a * 100, a, math.sqrt(2)).item() < 1e-9
    assert abs(mse_nrm(a, torch.tensor([[0.0, 3.0]]), math.sqrt(2)).item() - 2.0) < 1e-6


def test_baselines_and_fve():
    v = torch.randn(500, 16) + 3.0
    b = baselines(v, 4.0)
    n = normalize(v, 4.0)
    expected = 1 - (n.mean(0) ** 2).sum().item() / 16
    assert abs(b["baseline_rawvar"] - expected) < 1e-4
    assert b["baseline_mean_direction"] >= b["baseline_rawvar"] - 1e-6
    # predicting the mean direction scores B_mn; fve of a perfect prediction is 1
    assert abs(mse_nrm(b["mean_direction"].expand_as(v), v, 4.0).mean().item() - b["baseline_mean_direction"]) < 1e-4
    assert fve_nrm(torch.tensor(0.0), b["baseline_rawvar"]).item() == 1.0


def test_token_lookup_predicts_per_token_mean_direction():
    from nla_audit.baselines.token_lookup import TokenLookup

    v = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, -1.0]])
    lookup = TokenLookup.fit(v, [7, 7, 9, 5])
    pred = lookup.predict([9, 7, 42])
    assert torch.allclose(pred[0], torch.tensor([1.0, 0.0]))  # unit directions are averaged, not raw vectors
    assert torch.allclose(pred[1], torch.tensor([0.5, 0.5]))
    assert torch.allclose(pred[2], torch.tensor([0.5, 0.0]))  # unseen token: the overall mean direction
    assert lookup.coverage([9, 7, 42, 1]) == 0.5


def test_derangement_is_the_one_floor():
    from nla_audit.metrics import derangement

    for n in (2, 3, 10, 57):
        d = derangement(n, seed=n)
        assert sorted(d.tolist()) == list(range(n)) and not bool((d == torch.arange(n)).any())
    assert derangement(1).tolist() == [0] and derangement(9, 1).tolist() == derangement(9, 1).tolist()
    assert derangement(9, 1).tolist() != derangement(9, 2).tolist()


def test_spearman_is_rank_correlation_with_ties():
    from nla_audit.metrics import ranks, spearman

    assert ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, torch.ones(4)))
    assert math.isnan(spearman(x[:2], x[:2]))
