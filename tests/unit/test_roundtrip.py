"""The one round trip and its floor (``nla_audit.roundtrip``), on small random tensors with a stand-in AV and AR:
the AV writes its input vector as text and the AR reads it back, so the reconstruction is exactly what the AV
read, and the scores can be checked against ``nla_audit.metrics`` by hand."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from nla_audit.errors import InputError
from nla_audit.metrics import FAILED_REWARD, cosine, derangement, fve_nrm, mse_nrm
from nla_audit.roundtrip import (
    ORTHOGONAL_MSE,
    floor_order,
    penalise_failed,
    round_trip,
    score_reconstructions,
    score_texts,
)

D = 8


class EchoAV:
    """Writes each input row as its text (every third output untagged); records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, dict]] = []

    def explain(self, vectors, **kw):
        self.calls.append((vectors.clone(), kw))
        return [SimpleNamespace(text=json.dumps(r.tolist()), ok=i % 3 != 0) for i, r in enumerate(vectors)]


class EchoAR:
    """Reads the vector back from the text (float32 → JSON → float32 is exact)."""

    meta = SimpleNamespace(require_mse_scale=lambda: math.sqrt(D))

    def reconstruct(self, texts, batch_size=32):
        return torch.tensor([json.loads(t) for t in texts], dtype=torch.float32)


def test_score_reconstructions_agrees_with_the_metrics():
    pred, gold = torch.randn(6, D), torch.randn(6, D)
    s = score_reconstructions(pred, gold, math.sqrt(D), 0.7)
    assert torch.equal(s.mse, mse_nrm(pred, gold, math.sqrt(D)))
    assert torch.equal(s.cos, cosine(pred, gold))
    assert torch.equal(s.require_fve(), fve_nrm(mse_nrm(pred, gold, math.sqrt(D)), 0.7))
    assert score_reconstructions(pred, gold, math.sqrt(D)).fve is None
    with pytest.raises(InputError, match="B_rv"):
        score_reconstructions(pred, gold, math.sqrt(D)).require_fve()


def test_round_trip_scores_what_the_ar_reconstructs():
    v = torch.randn(5, D)
    rt = round_trip(EchoAV(), EchoAR(), v, 0.5)
    assert torch.equal(rt.pred, v) and torch.equal(rt.read, torch.arange(5))
    assert float(rt.mse.abs().max()) < 1e-6 and torch.allclose(rt.require_fve(), torch.ones(5), atol=1e-5)
    assert rt.failed_rate == pytest.approx(2 / 5)  # rows 0 and 3 untagged: scored all the same
    assert rt.texts == [json.dumps(r.tolist()) for r in v]


def test_round_trip_passes_retries_only_when_asked():
    v, plain, retried = torch.randn(3, D), EchoAV(), EchoAV()
    round_trip(plain, EchoAR(), v)
    round_trip(retried, EchoAR(), v, retries=2)
    assert "retries" not in plain.calls[0][1]  # AVs without the rule (other backends, stand-ins) still work
    assert retried.calls[0][1]["retries"] == 2


@pytest.mark.parametrize("n, seed", [(2, 0), (3, 1), (17, 4)])
def test_floor_reads_the_derangement_and_scores_against_the_true_rows(n, seed):
    v = torch.randn(n, D)
    av = EchoAV()
    rt = round_trip(av, EchoAR(), v, 0.5, shuffled=True, seed=seed)
    order = derangement(n, seed)
    assert torch.equal(rt.read, order) and bool((rt.read != torch.arange(n)).all())  # no row reads its own
    assert torch.equal(av.calls[0][0], v[order])
    # by hand: the AV read v[order], the AR gave it back, scored against v itself
    assert torch.equal(rt.mse, mse_nrm(v[order], v, math.sqrt(D)))
    assert torch.equal(rt.cos, cosine(v[order], v))
    assert torch.equal(rt.require_fve(), fve_nrm(mse_nrm(v[order], v, math.sqrt(D)), 0.5))


def test_floor_refuses_fewer_than_two_rows_before_generating():
    av = EchoAV()
    with pytest.raises(InputError, match="at least 2"):
        round_trip(av, EchoAR(), torch.randn(1, D), 1.0, shuffled=True)
    assert av.calls == [] and floor_order(2).tolist() == [1, 0]


def test_sampling_seed_only_when_sampling():
    av, ar, v = EchoAV(), EchoAR(), torch.randn(3, D)
    round_trip(av, ar, v, seed=5)
    round_trip(av, ar, v, seed=5, temperature=0.7)
    round_trip(av, ar, v, seed=5, sample_seed=9, temperature=0.7, max_new_tokens=7, batch_size=2)
    assert [c[1]["seed"] for c in av.calls] == [None, 5, 9]
    assert av.calls[2][1] == {"max_new_tokens": 7, "temperature": 0.7, "batch_size": 2, "seed": 9}


def test_score_texts_and_take():
    v = torch.randn(4, D)
    texts = [json.dumps(r.tolist()) for r in v.flip(0)]
    s = score_texts(EchoAR(), texts, v, 2.0)
    assert torch.equal(s.mse, mse_nrm(v.flip(0), v, math.sqrt(D)))
    part = round_trip(EchoAV(), EchoAR(), v, 2.0, shuffled=True).take(torch.tensor([2, 0]))
    full = round_trip(EchoAV(), EchoAR(), v, 2.0, shuffled=True)
    assert torch.equal(part.mse, full.mse[[2, 0]]) and torch.equal(part.read, full.read[[2, 0]])
    assert part.texts == [full.texts[2], full.texts[0]]


def test_penalty_is_the_orthogonal_score():
    mse = torch.tensor([0.25, 0.5, 3.0])
    out = penalise_failed(mse, torch.tensor([False, True, True]))
    assert out.tolist() == [0.25, ORTHOGONAL_MSE, ORTHOGONAL_MSE] and ORTHOGONAL_MSE == -FAILED_REWARD == 2.0
    a = torch.tensor([[1.0, 0.0]])
    assert mse_nrm(a, torch.tensor([[0.0, 5.0]]), math.sqrt(2)).item() == pytest.approx(ORTHOGONAL_MSE)
