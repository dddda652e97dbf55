from __future__ import annotations

import math

import pytest
import yaml

from nla_audit.errors import SidecarError
from nla_audit.sidecar import ModelSidecar, TokenMeta, read_model_sidecar

RELEASED_AR = {
    "kind": "nla_model", "schema_version": 2, "role": "critic", "stage": "sl", "base_checkpoint": "Qwen/Qwen2.5-7B-Instruct",
    "d_model": 3584, "extraction": {"injection_scale": None, "mse_scale": "sqrt_d_model"},
    "tokens": {"injection_char": "㈎", "injection_token_id": 149705, "injection_left_neighbor_id": 29,
               "injection_right_neighbor_id": 522, "critic_suffix_ids": [1318, 29, 366, 1708, 29]},
    "prompt_templates": {"actor": "A {injection_char}", "critic": "S {explanation}"},
    "critic": {"extraction_layer_index": 20},
}


def test_reads_both_spellings_and_known_baseline():
    m = ModelSidecar.from_dict(RELEASED_AR)
    assert m.role == "ar" and m.layer_index == 20 and m.ar_template == "S {explanation}"
    assert math.isclose(m.mse_scale, math.sqrt(3584))
    assert m.fve_baseline() == 0.7335
    release = dict(RELEASED_AR, role="ar", prompt_templates={"av": "A", "ar": "B"})
    del release["critic"]
    release["extraction_layer_index"] = 20
    assert ModelSidecar.from_dict(release).layer_index == 20


@pytest.mark.parametrize("where", ["critic.num_hidden_layers", "extraction_layer_index", "ar.num_hidden_layers"])
def test_layer_from_any_place(where):
    d = dict(RELEASED_AR)
    del d["critic"]
    head, _, key = where.rpartition(".")
    if head:
        d[head] = {key: 20}
    else:
        d[key] = 20
    assert ModelSidecar.from_dict(d).layer_index == 20


def test_roundtrip(tmp_path):
    m = ModelSidecar(role="av", base_checkpoint="x", d_model=8, layer_index=None,
                     tokens=TokenMeta("c", 1, 2, 3, (4, 5)), av_template="t", ar_template="u", injection_scale=20.0)
    m.save(tmp_path)
    back = read_model_sidecar(tmp_path, "av")
    assert back.tokens == m.tokens and back.injection_scale == 20.0
    with pytest.raises(SidecarError, match="AV sidecar"):
        read_model_sidecar(tmp_path, "ar")


def test_malformed(tmp_path):
    with pytest.raises(SidecarError, match="missing"):
        read_model_sidecar(tmp_path)
    (tmp_path / "nla_meta.yaml").write_text("role: [unclosed", encoding="utf-8")
    with pytest.raises(SidecarError, match="not valid YAML"):
        read_model_sidecar(tmp_path)
    (tmp_path / "nla_meta.yaml").write_text(yaml.safe_dump({"role": "judge", "d_model": 4}), encoding="utf-8")
    with pytest.raises(SidecarError, match="role"):
        read_model_sidecar(tmp_path)
    bad = dict(RELEASED_AR, extraction={"mse_scale": -1})
    with pytest.raises(SidecarError, match="positive"):
        ModelSidecar.from_dict(bad)
