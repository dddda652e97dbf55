"""Fixtures of the auditor tests: a tiny NLA at layer 2 and a labelled SAE at the same site, built once per module
(test_sae.py keeps its own ``sae_dir``, which overrides this one there)."""

from __future__ import annotations

import pytest

from tests.builders import build_tiny_nla, tiny_activation_parquet


@pytest.fixture(scope="module")
def nla_dirs(tiny_model_dir, tmp_path_factory):
    return build_tiny_nla(tiny_model_dir, tmp_path_factory.mktemp("nla"), layer=2)


@pytest.fixture(scope="module")
def sae_dir(tiny_model_dir, tmp_path_factory):
    """A labelled SAELens SAE trained on the tiny model's layer-2 activations (the NLA's site)."""
    from nla_audit.baselines.sae_labels import label_sae
    from nla_audit.baselines.sae_train import SAETrainConfig, train_sae

    root = tmp_path_factory.mktemp("sae")
    data = tiny_activation_parquet(tiny_model_dir, root)
    out = root / "sae"
    train_sae(SAETrainConfig(data=(str(data),), out=str(out), expansion=2, k=4, steps=20, batch_size=8),
              progress=False)
    label_sae(out, [str(data)], n_contexts=3)
    return out
