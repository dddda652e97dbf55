"""Steering: where the vector goes, how big it is, the NLA edit direction, and bad input."""

from __future__ import annotations

import pytest
import torch

from nla_audit.errors import InputError
from nla_audit.steering import (
    Span,
    add_where,
    mean_difference,
    next_token_shift,
    nla_direction,
    parse_span,
    random_direction,
    steer,
    steering,
    steering_delta,
    unit,
)


def test_spans_parse_one_token_a_span_or_everything_after():
    assert parse_span("3", 10) == Span(3, 4) and parse_span("2:5", 10) == Span(2, 5)
    assert parse_span("4:", 10) == Span(4, None) and parse_span("-2", 10) == Span(8, 9)
    assert Span(4, None).covers(1000) and not Span(2, 5).covers(5)
    for bad in ("0", "12", "x", "5:3", "1:11"):
        with pytest.raises(InputError):
            parse_span(bad, 10)


def test_delta_is_strength_times_norm_along_the_direction():
    d = torch.tensor([3.0, 4.0])
    delta = steering_delta(d, 2.0, 10.0)
    assert torch.allclose(delta, torch.tensor([12.0, 16.0])) and torch.isclose(delta.norm(), torch.tensor(20.0))
    assert torch.equal(unit(torch.zeros(3)), torch.zeros(3))  # a no-op edit steers nowhere


def test_vector_is_added_only_where_asked():
    h = torch.zeros(1, 4, 2)
    out = add_where(h, torch.tensor([1.0, -1.0]), Span(5, 7), offset=4)  # positions 4..7 of a cached decode
    assert out[0, :, 0].tolist() == [0.0, 1.0, 1.0, 0.0]


def test_steering_changes_logits_from_the_span_on_only(tiny_target):
    ids = torch.tensor([[1, 400, 401, 402, 403, 404]])
    base = tiny_target.model(ids).logits
    delta = steering_delta(random_direction(tiny_target.d_model), 4.0, 1.0)
    with steering(tiny_target.model, 1, delta, Span(3, 4)):
        steered = tiny_target.model(ids).logits
    assert torch.allclose(base[0, :3], steered[0, :3], atol=1e-5)  # before the span: untouched (causal)
    assert not torch.allclose(base[0, 3:], steered[0, 3:], atol=1e-3)  # at and after it: changed
    assert torch.allclose(tiny_target.model(ids).logits, base)  # the hook is gone after the block


def test_zero_direction_generates_the_unsteered_text(tiny_target):
    ids = [1, 400, 401, 402, 403]
    plain = tiny_target.tokenizer.decode(tiny_target.model.generate(
        torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0, len(ids):], skip_special_tokens=True)
    assert steer(tiny_target, 1, ids, torch.zeros(tiny_target.d_model), "2:", 8.0, max_new_tokens=6) == plain
    strong = steer(tiny_target, 1, ids, random_direction(tiny_target.d_model), "2:", 50.0, max_new_tokens=6)
    assert strong != plain


def test_bad_directions_are_one_clear_error(tiny_target):
    with pytest.raises(InputError, match="width"):
        steer(tiny_target, 1, [1, 2, 3], torch.ones(7), "1", 1.0)
    with pytest.raises(InputError, match="outside"):
        steer(tiny_target, 1, [1, 2, 3], torch.ones(tiny_target.d_model), "9", 1.0)
    with pytest.raises(InputError, match="non-empty"):
        mean_difference(torch.zeros(0, 4), torch.ones(2, 4))


def test_nla_edit_direction_is_zero_for_no_edit_and_refuses_an_empty_one(tiny_model_dir, tmp_path):
    from nla_audit.document import Document
    from nla_audit.nla import NLA
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path)
    nla = NLA.load(av, ar, dtype="float32", device="cpu")
    assert torch.equal(nla_direction(nla, "a cat", "a cat"), torch.zeros(nla.ar.meta.d_model))
    d = nla_direction(nla, "a cat on a mat", "a dog on a mat")
    assert d.shape == (nla.ar.meta.d_model,) and d.norm() > 0
    with pytest.raises(InputError, match="empty"):
        nla_direction(nla, "a cat", "  ")
    doc = Document(id="d", text="The old lighthouse keeper climbed the stairs.")
    vec, expl = nla.steering_vector(doc, 3, "about the sea", max_new_tokens=4)
    assert vec.shape == (nla.ar.meta.d_model,) and isinstance(expl, str)
    with pytest.raises(InputError, match="outside"):
        nla.steering_vector(doc, 99, "x")


def test_cli_steer_prints_both_sides_as_json_and_refuses_bad_input(tiny_model_dir, tmp_path, capsys):
    import json

    from nla_audit.cli import main
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path)
    args = ["steer", "--text", "The old lighthouse keeper climbed the stairs", "--av", str(av), "--ar", str(ar),
            "--max-new-tokens", "3", "--json"]
    assert main([*args, "--edit", "about the sea", "--samples", "2", "--temperature", "0.7"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["original"]) == len(out["steered"]) == 2 and out["edit"] == "about the sea"
    assert main([*args, "--edit", "  "]) == 2 and "--edit is empty" in capsys.readouterr().err
    assert main([*args, "--edit", "x", "--position", "99"]) == 2
    err = capsys.readouterr().err
    assert "outside" in err and len(err.strip().splitlines()) <= 2  # the loading line, then one error line
    assert main([*args, "--edit", "x", "--samples", "2"]) == 2


def test_next_token_shift_is_zero_without_a_direction_and_grows_with_strength(tiny_target):
    ids = [1, 400, 401, 402, 403]
    d = random_direction(tiny_target.d_model)
    assert next_token_shift(tiny_target, 1, ids, torch.zeros(tiny_target.d_model), 4.0) == pytest.approx(0, abs=1e-6)
    weak, strong = (next_token_shift(tiny_target, 1, ids, d, s) for s in (0.5, 8.0))
    assert 0 < weak < strong
    with pytest.raises(InputError, match="width"):
        next_token_shift(tiny_target, 1, ids, torch.ones(7), 1.0)


def test_compare_steers_the_token_alone_unless_onward(tiny_model_dir, tmp_path):
    from nla_audit.nla import NLA
    from nla_audit.steering import compare
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path)
    nla = NLA.load(av, ar, dtype="float32", device="cpu")
    ids, expl, edit = [1, 400, 401, 402, 403], "The text is about cats.", "The text is about the sea."
    direction = nla_direction(nla, expl, edit)
    norm = float(nla.target.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[nla.layer + 1][0, 3]
                 .norm())
    for onward, span in ((False, "3"), (True, "3:")):
        res = compare(nla, ids, 3, edit, 30.0, max_new_tokens=4, explanation=expl, onward=onward)
        assert res.onward is onward and res.strength == 30.0
        assert res.steered[0] == steer(nla.target, nla.layer, ids[:4], direction, span, 30.0, 4, norm=norm)


def test_cli_steer_refuses_a_target_from_another_site(tiny_model_dir, tmp_path, capsys):
    from nla_audit.cli import main
    from tests.builders import build_tiny_model_dir, build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path)
    other = build_tiny_model_dir(tmp_path / "other", seed=1)  # same width, another model: not the NLA's base
    args = ["steer", "--text", "The old lighthouse keeper", "--av", str(av), "--ar", str(ar), "--edit", "the sea",
            "--max-new-tokens", "2", "--model", str(other)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not that model or a fine-tune of it" in err and "Traceback" not in err
