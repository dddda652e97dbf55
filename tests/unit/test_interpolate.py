"""WiSE-FT interpolation of two NLA checkpoints: exact at the ends, linear between, refuses mismatched pairs."""

from __future__ import annotations

import pytest
import torch

from nla_audit.errors import InputError
from nla_audit.training.interpolate import interpolate_checkpoints, interpolate_tensors


@pytest.fixture(scope="module")
def two_nlas(tiny_model_dir, tmp_path_factory):
    from tests.builders import build_tiny_nla

    root = tmp_path_factory.mktemp("interp")
    torch.manual_seed(1)
    a = build_tiny_nla(tiny_model_dir, root / "a", layer=2)
    b = build_tiny_nla(tiny_model_dir, root / "b", layer=2)
    from safetensors.torch import load_file, save_file

    torch.manual_seed(2)  # the builder's AR is deterministic: move every weight of b's so the two ARs differ
    for f in b[1].glob("*.safetensors"):
        save_file({k: v + 0.05 * torch.randn_like(v) for k, v in load_file(str(f)).items()}, str(f))
    return a, b


def test_interpolate_tensors_is_linear_and_keeps_dtype():
    a = {"w": torch.zeros(2, 3, dtype=torch.bfloat16), "h": torch.ones(4)}
    b = {"w": torch.full((2, 3), 4.0, dtype=torch.bfloat16), "h": torch.full((4,), 3.0)}
    out = interpolate_tensors(a, b, 0.25)
    assert out["w"].dtype == torch.bfloat16 and torch.equal(out["w"], torch.full((2, 3), 1.0, dtype=torch.bfloat16))
    assert torch.allclose(out["h"], torch.full((4,), 1.5))
    assert torch.equal(interpolate_tensors(a, b, 0.0)["h"], a["h"])


@pytest.mark.parametrize("b, alpha, msg", [({"w": torch.zeros(2)}, 0.5, "different tensors"),
                                           ({"h": torch.zeros(3)}, 0.5, "shapes"),
                                           ({"h": torch.zeros(2)}, 1.5, "outside [0, 1]")])
def test_interpolate_tensors_refuses(b, alpha, msg):
    with pytest.raises(InputError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        interpolate_tensors({"h": torch.zeros(2)}, b, alpha)


def test_ar_interpolation_ends_reproduce_the_inputs_and_the_middle_differs(two_nlas, tmp_path):
    from nla_audit.ar import ActivationReconstructor
    from nla_audit.sidecar import read_model_sidecar

    (_, ar_a), (_, ar_b) = two_nlas
    texts = ["a cat on a mat", "the assistant's turn begins"]
    preds = {}
    for alpha in (0.0, 0.5, 1.0):
        out = interpolate_checkpoints(ar_a, ar_b, alpha, tmp_path / f"ar{alpha}")
        preds[alpha] = ActivationReconstructor.from_pretrained(out, "float32", "cpu").reconstruct(texts, 2)
    ref = {k: ActivationReconstructor.from_pretrained(d, "float32", "cpu").reconstruct(texts, 2)
           for k, d in ((0.0, ar_a), (1.0, ar_b))}
    assert torch.allclose(preds[0.0], ref[0.0], atol=1e-5) and torch.allclose(preds[1.0], ref[1.0], atol=1e-5)
    gap = (ref[1.0] - ref[0.0]).norm()
    assert gap > 0 and min((preds[0.5] - ref[k]).norm() for k in ref) > 0.2 * gap  # between the two, not one of them
    from safetensors.torch import load_file

    heads = [load_file(str(d / "value_head.safetensors"))["weight"] for d in (ar_a, ar_b, tmp_path / "ar0.5")]
    assert torch.allclose(heads[2], (heads[0] + heads[1]) / 2, atol=1e-6)
    meta = read_model_sidecar(tmp_path / "ar0.5", "ar")
    assert meta.parent_checkpoints == (str(ar_a), str(ar_b)) and meta.training["interpolation"]["alpha"] == 0.5


def test_cli_refuses_an_av_with_an_ar_in_one_line_and_writes_nothing(two_nlas, tmp_path, capsys):
    from nla_audit.cli import main

    (av_a, _), (_, ar_b) = two_nlas
    out = tmp_path / "mixed"
    code = main(["train", "interpolate", "--from", str(av_a), "--to", str(ar_b), "--alpha", "0.5", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "differ in role" in err and "Traceback" not in err and not out.exists()
    assert list(tmp_path.iterdir()) == []
