"""The AR as a verifier: claim splitting and the reconstruction cost of deleting each claim."""

from __future__ import annotations

import pytest
import torch

from nla_audit.errors import InputError
from nla_audit.faithfulness import claim_effects, claims


def test_claims_are_sentences():
    assert claims("A cat sat. It was red!\nThen it left?") == ["A cat sat.", "It was red!", "Then it left?"]
    assert claims("  ") == []


def test_each_claim_gets_the_cost_of_deleting_it(tiny_model_dir, tmp_path):
    from nla_audit.metrics import mse_nrm
    from nla_audit.nla import NLA
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path)
    nla = NLA.load(av, ar, dtype="float32", device="cpu")
    v = torch.randn(nla.ar.meta.d_model)
    whole, effects = claim_effects(nla, "The text is about cats. The next word is mat.", v)
    assert [e.claim for e in effects] == ["The text is about cats.", "The next word is mat."]
    alone = nla.ar.reconstruct(["The next word is mat."])
    expected = float(mse_nrm(alone, v[None], nla.ar.meta.mse_scale)[0])
    assert effects[0].mse_without == pytest.approx(expected, rel=1e-4)
    assert effects[0].delta_mse == pytest.approx(expected - whole, rel=1e-4, abs=1e-6)
    with pytest.raises(InputError, match="empty"):
        claim_effects(nla, " ", v)
    with pytest.raises(InputError, match="width"):
        claim_effects(nla, "A claim.", torch.randn(5))


def test_claim_steering_pairs_each_claims_reliance_with_its_steering_effect(tiny_model_dir, tmp_path):
    from nla_audit.faithfulness import claim_steering
    from nla_audit.nla import NLA
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path)
    nla = NLA.load(av, ar, dtype="float32", device="cpu")
    ids = [1, 400, 401, 402, 403]
    expl = "The text is about cats. The next word is mat. It rhymes."
    rows = claim_steering(nla, expl, ids, strength=4.0)
    assert [r.claim for r in rows] == claims(expl)
    assert all(r.kl >= 0 for r in rows) and any(r.kl > 0 for r in rows)
    from nla_audit.extract import text_activations

    _, effects = claim_effects(nla, expl, text_activations(nla.target, nla.layer, ids)[-1])
    assert [r.delta_mse for r in rows] == pytest.approx([e.delta_mse for e in effects], rel=1e-4, abs=1e-6)
    with pytest.raises(InputError, match="at least 2 tokens"):
        claim_steering(nla, expl, [1])
