from __future__ import annotations

import pytest
import torch

from nla_audit.ar import ActivationReconstructor, last_token_index
from nla_audit.av import (
    RETRY_TEMPERATURE,
    ActivationVerbalizer,
    Explanation,
    foreign_script_fraction,
    parse_explanation,
    resample_unclosed,
    validate_vectors,
)
from nla_audit.errors import InputError, SidecarError
from nla_audit.guidance import generate_guided, guided_logprobs, sample_token
from nla_audit.nla import NLA, best_sample, consensus_sample, resolve_positions
from tests.builders import build_tiny_nla


@pytest.fixture(scope="module")
def tiny_nla(tiny_model_dir, tmp_path_factory):
    return build_tiny_nla(tiny_model_dir, tmp_path_factory.mktemp("nla"))


def test_parse_explanation():
    assert parse_explanation("x <explanation>\n a b \n</explanation> y <explanation>z</explanation>") == ("a b", True)
    assert parse_explanation("no tags here ") == ("no tags here", False)
    assert foreign_script_fraction("你好世界 hello") > 0.3 > foreign_script_fraction("hello world")


def test_validate_vectors():
    with pytest.raises(InputError, match=r"\[n, 64\]"):
        validate_vectors(torch.ones(2, 3), 64)
    with pytest.raises(InputError, match="NaN"):
        validate_vectors(torch.tensor([[1.0, float("nan")]]), 2)
    with pytest.raises(InputError, match="zero norm"):
        validate_vectors(torch.zeros(1, 2), 2)
    assert validate_vectors(torch.ones(2), 2).shape == (1, 2)


def test_batched_explain_equals_per_vector_greedy(tiny_nla):
    av = ActivationVerbalizer.from_pretrained(tiny_nla[0])
    v = torch.randn(3, 64)
    batched = av.explain(v, max_new_tokens=8, batch_size=3)
    single = [av.explain(v[i], max_new_tokens=8)[0] for i in range(3)]
    assert [e.raw for e in batched] == [e.raw for e in single]
    assert all(not e.ok and e.truncated and e.n_tokens == 8 for e in batched)  # untrained: no tags, flagged


def _expl(text: str, ok: bool) -> Explanation:
    return Explanation(text=text, raw=text, ok=ok, truncated=not ok, n_tokens=3)


def test_resample_unclosed_retries_only_the_unclosed_rows_and_keeps_the_first_closed_sample():
    calls = []

    def explain(v, temperature, seed, **decode):  # row 1 closes on its 2nd resample, row 2 never does
        calls.append((v[:, 0].tolist(), temperature, seed, decode))
        return [_expl(f"r{int(x)}-{seed}", ok=int(x) == 1 and seed == 2) for x in v[:, 0]]

    v = torch.arange(3.0)[:, None].repeat(1, 4) + 0.5
    v[:, 0] = torch.arange(3.0)
    first = [_expl("greedy0", True), _expl("loop1", False), _expl("loop2", False)]
    out = resample_unclosed(explain, v, first, retries=3, temperature=0.0, seed=None, max_new_tokens=9)
    assert [c[0] for c in calls] == [[1.0, 2.0], [1.0, 2.0], [2.0]]  # closed rows are never decoded again
    assert {c[1] for c in calls} == {RETRY_TEMPERATURE} and [c[2] for c in calls] == [1, 2, 3]
    assert calls[0][3] == {"max_new_tokens": 9}
    assert out[0] is first[0]
    assert (out[1].text, out[1].ok, out[1].retries) == ("r1-2", True, 2)
    assert (out[2].text, out[2].ok, out[2].retries) == ("loop2", False, 3)  # never closed: its first output
    assert resample_unclosed(explain, v, first, retries=0, temperature=0.0, seed=None) == first
    with pytest.raises(InputError, match="retries >= 0"):
        resample_unclosed(explain, v, first, retries=-1, temperature=0.0, seed=None)


def test_explain_with_retries_resamples_an_unclosed_greedy_decode(tiny_nla, monkeypatch):
    av = ActivationVerbalizer.from_pretrained(tiny_nla[0])
    v = torch.randn(2, 64)
    greedy = av.explain(v, max_new_tokens=6)
    temps = []
    real = av._generate_batch
    monkeypatch.setattr(av, "_generate_batch", lambda chunk, prompts, n, t, p: temps.append(t) or real(chunk, prompts, n, t, p))
    again = av.explain(v, max_new_tokens=6, retries=2)
    assert temps == [0.0, RETRY_TEMPERATURE, RETRY_TEMPERATURE]  # untrained: never closes, so both resamples run
    assert [e.raw for e in again] == [e.raw for e in greedy] and all(e.retries == 2 and not e.ok for e in again)


def test_guided_logprobs_interpolate_and_extrapolate():
    cond = torch.tensor([[0.7, 0.2, 0.1]]).log()
    uncond = torch.tensor([[0.2, 0.7, 0.1]]).log()
    assert torch.allclose(guided_logprobs(cond, uncond, 1.0), cond, atol=1e-6)
    assert torch.allclose(guided_logprobs(cond, uncond, 0.0), uncond, atol=1e-6)
    strong = guided_logprobs(cond, uncond, 3.0).exp()
    assert torch.allclose(strong.sum(-1), torch.ones(1))
    assert strong[0, 0] > 0.7 and strong[0, 1] < 0.2  # pushed further from the null branch than cond itself


def test_sample_token_greedy_and_sampled():
    logp = torch.tensor([[0.0, -50.0, -50.0], [-50.0, -50.0, 0.0]])
    assert sample_token(logp, 0.0).tolist() == [0, 2]
    assert sample_token(logp, 1.0).tolist() == [0, 2]  # near-certain rows draw their mode


def test_guided_generation_reduces_to_plain_decoding_at_weights_one_and_zero(tiny_nla):
    """The KV-cached guided loop must reproduce transformers' decoding of the real vectors at weight 1 and of
    the null vector at weight 0 (same seed, same draws), greedy and sampled."""
    av = ActivationVerbalizer.from_pretrained(tiny_nla[0])
    v, null = torch.randn(3, 64), torch.randn(64)
    for t in (0.0, 1.0):
        plain = av.generate(v, max_new_tokens=8, batch_size=3, temperature=t, seed=0)
        assert generate_guided(av, v, null, 1.0, max_new_tokens=8, batch_size=3, temperature=t, seed=0) == plain
    sampled_null = av.generate(null.expand(3, -1), max_new_tokens=8, batch_size=3, temperature=1.0, seed=0)
    assert generate_guided(av, v, null, 0.0, max_new_tokens=8, batch_size=3, temperature=1.0, seed=0) == sampled_null
    # the random tiny model barely reads its injection: only a large weight changes its draws, but it must
    assert generate_guided(av, v, null, 100.0, max_new_tokens=8, batch_size=3, temperature=1.0, seed=0) != plain
    with pytest.raises(InputError, match="null_vector"):
        generate_guided(av, v, torch.zeros(64), 2.0, max_new_tokens=4)
    with pytest.raises(InputError, match="null_vector has 2 rows"):
        generate_guided(av, v, torch.randn(2, 64), 2.0, max_new_tokens=4)


def test_ar_identity_head_predicts_block_output(tiny_nla, tiny_model_dir):
    """At init (identity head, zero LoRA B) the AR's prediction is block K's output at the last token."""
    from nla_audit.models import load_target
    from nla_audit.training.nla_models import as_reconstructor, build_ar

    lm, inner, head, tok = build_ar(str(tiny_model_dir), 2, 4, 8.0)
    ar = as_reconstructor(inner, head, tok, 2, 64)
    text = "a cat sat"
    pred = ar.reconstruct([text])
    target = load_target(str(tiny_model_dir), dtype="float32", device="cpu")  # same device/dtype as the AR
    ids = tok(ar.prompt(text), add_special_tokens=True, return_tensors="pt").input_ids
    with torch.no_grad():
        hs = target.model(ids, output_hidden_states=True).hidden_states[3][0, -1]
    torch.testing.assert_close(pred[0], hs, atol=1e-4, rtol=1e-4)


def test_ar_loads_and_scores(tiny_nla):
    ar = ActivationReconstructor.from_pretrained(tiny_nla[1])
    assert len(ar.backbone.layers) == 3  # K + 1 blocks
    gold = torch.randn(2, 64)
    s = ar.score(["one explanation", "another, longer explanation text"], gold)
    assert s["mse_nrm"].shape == (2,) and "fve_nrm" in s
    # padded batch equals one-by-one (right padding, last real token)
    both = ar.reconstruct(["short", "a much longer explanation here"])
    one = torch.cat([ar.reconstruct(["short"]), ar.reconstruct(["a much longer explanation here"])])
    torch.testing.assert_close(both, one, atol=1e-4, rtol=1e-4)


def test_last_token_index_either_side():
    assert last_token_index(torch.tensor([[1, 1, 0], [0, 1, 1]])).tolist() == [1, 2]


def test_missing_value_head_and_wrong_role(tiny_nla):
    (tiny_nla[1] / "value_head.safetensors").rename(tiny_nla[1] / "vh.bak")
    try:
        with pytest.raises(SidecarError, match="value_head"):
            ActivationReconstructor.from_pretrained(tiny_nla[1])
    finally:
        (tiny_nla[1] / "vh.bak").rename(tiny_nla[1] / "value_head.safetensors")
    with pytest.raises(SidecarError, match="AV sidecar"):
        ActivationReconstructor.from_pretrained(tiny_nla[0])


def test_nla_explains_document_positions(tiny_nla, tiny_target):
    from nla_audit.corpus import Document

    nla = NLA.load(*tiny_nla)
    nla._target = tiny_target
    rows = nla.explain_document(Document(id="t", text="one two three four"), "last", max_new_tokens=4)
    assert len(rows) == 1 and rows[0].position == 3 and rows[0].fve_nrm is not None
    with pytest.raises(InputError, match="out of range"):
        resolve_positions([9], 4)
    assert resolve_positions("1,-1", 4) == [1, 3] and resolve_positions("all", 3) == [1, 2]


def test_export_full_roundtrip_matches_adapter_format(tiny_nla, tmp_path):
    """Adapters merged and written in the released full-weight format load to the same outputs."""
    from nla_audit.checkpoint import export_full

    nla = NLA.load(*tiny_nla)
    av_dir, ar_dir = export_full(nla.av, nla.ar, tmp_path / "full")
    assert (av_dir / "config.json").exists() and not (av_dir / "adapter.safetensors").exists()
    full = NLA.load(av_dir, ar_dir)
    assert len(full.ar.backbone.layers) == 3
    v = torch.randn(2, 64)
    assert [e.raw for e in full.av.explain(v, max_new_tokens=5)] == [e.raw for e in nla.av.explain(v, max_new_tokens=5)]
    texts = ["a b c", "hello there"]
    torch.testing.assert_close(full.ar.reconstruct(texts), nla.ar.reconstruct(texts), atol=1e-4, rtol=1e-4)


def test_best_sample_prefers_low_mse_among_tagged():
    mse = torch.tensor([0.5, 0.2, 0.9, 0.1, 0.3, 0.4])
    ok = torch.tensor([True, True, True, False, False, False])
    # group 0: the lowest of the tagged; group 1: none tagged, so the lowest overall
    assert best_sample(mse, ok, 3).tolist() == [1, 3]
    assert best_sample(torch.tensor([0.3, 0.1]), torch.tensor([True, False]), 2).tolist() == [0]


def test_consensus_sample_picks_the_reconstruction_nearest_the_mean():
    # group 0: the mean is x = 0.125, nearest the last sample
    g0 = torch.tensor([[-1.0, 0.0], [0.2, 0.0], [1.2, 0.0], [0.1, 0.0]])
    # group 1: an untagged outlier would drag the mean to x ≈ 25 and win there; tagged only, the mean is 1/6
    g1 = torch.tensor([[2.0, 0.0], [100.0, 0.0], [-2.0, 0.0], [0.5, 0.0]])
    ok = torch.tensor([True, True, True, True, True, False, True, True])
    assert consensus_sample(torch.cat([g0, g1]), ok, 4).tolist() == [3, 4 + 3]
    # no tagged sample in a group: all of them count, rather than none
    assert consensus_sample(g0, torch.zeros(4, dtype=torch.bool), 4).tolist() == [3]


def test_pick_rules_choose_differently_and_score_against_the_activation(tiny_nla, monkeypatch):
    from nla_audit.av import Explanation

    nla = NLA.load(*tiny_nla, dtype="float32")
    d = nla.av.d_model
    v = torch.zeros(1, d)
    v[0, 0] = 1.0
    # reconstructions: one on the activation, three bunched around another direction: closest takes the
    # first, consensus (blind to v) one of the bunch, the one nearest the bunch's mean
    pred = torch.zeros(4, d)
    pred[0, 0] = 1.0
    pred[1:, 1] = 1.0
    pred[1, 2], pred[2, 2], pred[3, 2] = 0.3, 0.05, -0.2
    expl = [Explanation(text=f"s{i}", raw=f"s{i}", ok=True, truncated=False, n_tokens=2) for i in range(4)]
    monkeypatch.setattr(nla, "sample_explanations", lambda vec, k, **kw: (expl, pred))
    closest = nla.explain_vectors(v, temperature=1.0, best_of=4)[0]
    consensus = nla.explain_vectors(v, temperature=1.0, best_of=4, pick="consensus")[0]
    assert closest.explanation == "s0" and closest.mse_nrm == pytest.approx(0.0, abs=1e-6)
    assert consensus.explanation == "s2" and consensus.pick == "consensus"
    # scored against the activation all the same: its reconstruction is orthogonal to v
    assert consensus.cos == pytest.approx(0.0, abs=1e-6) and consensus.mse_nrm > 0.5
    with pytest.raises(InputError, match="pick"):
        nla.explain_vectors(v, temperature=1.0, best_of=2, pick="best")
    with pytest.raises(InputError, match="tie"):
        nla.explain_vectors(v, temperature=1.0, best_of=2, pick="consensus")


def test_best_of_keeps_the_best_reconstruction(tiny_nla):
    nla = NLA.load(*tiny_nla, dtype="float32")
    v = torch.randn(2, nla.av.d_model)
    one = nla.explain_vectors(v, max_new_tokens=4, temperature=1.0, seed=0, best_of=1)
    many = nla.explain_vectors(v, max_new_tokens=4, temperature=1.0, seed=0, best_of=4)
    assert len(many) == 2 and all(r.best_of == 4 for r in many)
    # the seeded first candidate of each group is not the seeded single sample, so compare with all candidates
    cands = nla.explain_vectors(v.repeat_interleave(4, dim=0), max_new_tokens=4, temperature=1.0, seed=0)
    for i, r in enumerate(many):
        group = cands[4 * i: 4 * i + 4]
        assert r.mse_nrm == pytest.approx(min(c.mse_nrm for c in group if c.ok == r.ok), rel=1e-4)
    assert len(one) == 2
    with pytest.raises(InputError, match="temperature"):
        nla.explain_vectors(v, best_of=3)  # greedy samples would all be the same


def test_progress_reports_each_batch(tiny_nla):
    nla = NLA.load(*tiny_nla)
    seen = []
    nla.explain_vectors(torch.randn(5, nla.av.d_model), max_new_tokens=2, batch_size=2,
                        progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
