"""SAE baseline: SAELens training on a site, SAELens-loadable output, labels, the explainer, bad input.

Synthetic activations (d=64, sparse sums of 128 ground-truth directions) stand in for a model's residual
stream, so training is a few seconds; one test uses the tiny random Llama's real block outputs.
Run: pytest -q tests/unit/test_sae.py
"""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import torch

from nla_audit.baselines.sae import SAEExplainer, Site, check_same_site
from nla_audit.errors import InputError, NLAAuditError
from nla_audit.explainer import Explainer

D = 64
MODEL = "test-org/tiny-model"


def write_acts(path, vecs, doc_ids, texts, layer=2, model=MODEL):
    """An activation parquet + dataset sidecar, as `nla-audit extract` writes them."""
    from nla_audit.sidecar import write_dataset_sidecar
    from nla_audit.vectors import VectorWriter

    w = VectorWriter(path, vecs.shape[1])
    w.write({"activation_vector": vecs, "doc_id": doc_ids, "n_raw_tokens": [5] * len(vecs),
             "detokenized_text_truncated": texts, "activation_layer": [layer] * len(vecs)})
    w.close()
    write_dataset_sidecar(path, {"dataset_id": path.stem, "extraction": {"base_model": model, "layer_index": layer,
                                                                          "d_model": vecs.shape[1]}})
    return path


def synthetic(path, n=1500, seed=0, doc_prefix="d", layer=2, model=MODEL):
    """Rows = 3 of 128 fixed unit directions with positive weights + an offset; the text ends in the
    strongest feature's word, so labels have something to find."""
    rng = np.random.default_rng(seed)
    dirs = np.random.default_rng(123).standard_normal((128, D)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    feats = np.stack([rng.choice(128, 3, replace=False) for _ in range(n)])
    w = rng.uniform(1, 4, (n, 3)).astype(np.float32)
    vecs = (w[:, :, None] * dirs[feats]).sum(1) + 0.5
    texts = [f"some words about topic{feats[i, w[i].argmax()]} then word{feats[i, w[i].argmax()]}" for i in range(n)]
    return write_acts(path, vecs.astype(np.float32), [f"{doc_prefix}{i // 10}" for i in range(n)], texts, layer, model)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae_data")
    return {"train": synthetic(root / "train.parquet"), "test": synthetic(root / "test.parquet", 300, 1, "t"),
            "other_layer": synthetic(root / "l3.parquet", 200, 2, "o", layer=3)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    from nla_audit.baselines.sae_train import SAETrainConfig, train_sae

    out = tmp_path_factory.mktemp("sae") / "sae"
    metrics = train_sae(SAETrainConfig(data=(str(data["train"]),), out=str(out), held_out=str(data["test"]),
                                       expansion=4, k=4, steps=150, batch_size=128, lr=3e-3, dead_window=50),
                        progress=False)
    return out, metrics


@pytest.fixture()
def sae_dir(trained, tmp_path):
    """A private copy of the trained SAE (tests add labels to it)."""
    return shutil.copytree(trained[0], tmp_path / "sae")


# ----------------------------------------------------------------------------------------------- training
def test_training_lowers_loss_and_reports_metrics(trained):
    out, m = trained
    t, e = m["training"], m["eval"]
    assert t["loss_last"] < 0.5 * t["loss_first"]
    assert m["eval_on"] == "held_out" and e["n"] == 300 and m["d_sae"] == 4 * D
    assert e["fve_nrm"] > 0.3 and abs(e["l0"] - 4) < 1e-6 and 0 <= e["dead_frac"] < 1
    assert json.loads((out / "metrics.json").read_text())["eval"]["fve_nrm"] == pytest.approx(e["fve_nrm"])


def test_saved_sae_loads_with_saelens_and_records_site(trained):
    import yaml
    from sae_lens import SAE

    out, _ = trained
    sae = SAE.load_from_disk(str(out))
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (D, 4 * D)
    assert sae.encode(torch.randn(3, D)).shape == (3, 4 * D)
    assert sae.cfg.metadata.hook_name == "blocks.2.hook_resid_post" and sae.cfg.metadata.model_name == MODEL
    meta = yaml.safe_load((out / "sae_meta.yaml").read_text())
    assert (meta["base_model"], meta["layer_index"], meta["d_model"], meta["hidden_states_index"]) == (MODEL, 2, D, 3)
    assert meta["datasets"] == ["train"]


def test_batchtopk_bf16_saves_as_jumprelu(tmp_path, data):
    from sae_lens import SAE

    from nla_audit.baselines.sae_train import SAETrainConfig, train_sae

    m = train_sae(SAETrainConfig(data=(str(data["train"]),), out=str(tmp_path / "b"), arch="batchtopk", k=4,
                                 steps=40, batch_size=128, lr=3e-3, dtype="bfloat16"), progress=False)
    assert m["eval_on"].startswith("train") and m["training"]["loss_last"] < m["training"]["loss_first"]
    sae = SAE.load_from_disk(str(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "cfg.json").read_text())["architecture"] == "jumprelu"
    assert sae.W_enc.dtype == torch.bfloat16


def test_trains_on_tiny_model_activations(tmp_path, tiny_target):
    from nla_audit.baselines.sae_train import SAETrainConfig, train_sae
    from nla_audit.extract import ExtractConfig, extract_activations
    from tests.builders import text_corpus

    acts = tmp_path / "a.parquet"
    extract_activations(ExtractConfig(out=str(acts), corpus=str(text_corpus(tmp_path / "c.jsonl")), layer=1,
                                      all_positions=True, min_position=1), target=tiny_target, progress=False)
    m = train_sae(SAETrainConfig(data=(str(acts),), out=str(tmp_path / "s"), k=8, steps=30, batch_size=64, lr=3e-3),
                  progress=False)
    assert m["training"]["loss_last"] < m["training"]["loss_first"]
    assert Site.of(str(acts))[0].layer == 1
    with pytest.warns(UserWarning):
        ex = SAEExplainer.from_dir(tmp_path / "s")
    assert ex.site == (tiny_target.name, 1)


# ----------------------------------------------------------------------------------------------- labels + explainer
def test_offline_labels_and_explainer(sae_dir, data):
    from nla_audit.baselines.sae_labels import label_sae

    summary = label_sae(sae_dir, [str(data["train"])], n_contexts=5)
    assert summary["proxy"] and summary["n_labelled"] > 0
    doc = json.loads((sae_dir / "labels.json").read_text())
    alive = [v for v in doc["latents"].values() if v["top"]]
    assert all(v["label"].startswith("ends in “word") for v in alive) and len(alive[0]["top"]) <= 5
    ex = SAEExplainer.from_dir(sae_dir, top_n=3)
    assert isinstance(ex, Explainer) and ex.name == "sae" and ex.warning is None
    vecs = torch.from_numpy(np.random.default_rng(0).standard_normal((4, D)).astype(np.float32) + 0.5)
    texts = ex.describe(vecs)
    assert len(texts) == 4 and all(t.startswith("#") and "ends in" in t for t in texts)
    assert all(1 <= len(t.splitlines()) <= 3 for t in texts)


def test_missing_labels_warn_not_crash(sae_dir):
    with pytest.warns(UserWarning, match="no latent labels"):
        ex = SAEExplainer.from_dir(sae_dir)
    texts = ex.describe(torch.randn(2, D) + 0.5)
    assert len(texts) == 2 and all(t.startswith("[warning:") and "nla-audit sae label" in t for t in texts)
    assert "(unlabelled)" in texts[0]


def test_malformed_labels_is_a_clear_error(sae_dir):
    (sae_dir / "labels.json").write_text("{not json")
    with pytest.raises(InputError, match="labels.json is malformed"):
        SAEExplainer.from_dir(sae_dir)


class _FakeClaude:
    """An anthropic.AsyncAnthropic stand-in that counts calls."""

    def __init__(self):
        self.calls = 0
        self.messages = self

    async def create(self, **kw):
        self.calls += 1
        assert "«" in kw["messages"][0]["content"]
        return types.SimpleNamespace(content=[types.SimpleNamespace(text="<label>a fake feature</label>")])


def test_claude_labeller_with_cache(sae_dir, data, tmp_path):
    from nla_audit.baselines.sae_labels import ClaudeLabeller, label_sae

    fake = _FakeClaude()
    lab = ClaudeLabeller(model="fake", cache_dir=tmp_path / "cache", concurrency=4, client=fake)
    summary = label_sae(sae_dir, [str(data["test"])], n_contexts=3, labeller=lab)
    assert not summary["proxy"] and summary["n_claude"] == summary["n_labelled"] == fake.calls > 0
    label_sae(sae_dir, [str(data["test"])], n_contexts=3, labeller=lab)
    assert fake.calls == summary["n_claude"]  # second run: all from the disk cache
    ex = SAEExplainer.from_dir(sae_dir)
    assert "a fake feature" in ex.describe(torch.randn(1, D) + 0.5)[0]


# ----------------------------------------------------------------------------------------------- sites
def test_site_mismatch_is_an_input_error(sae_dir, data):
    from nla_audit.sidecar import read_dataset_sidecar

    with pytest.warns(UserWarning):
        ex = SAEExplainer.from_dir(sae_dir)
    nla_like = types.SimpleNamespace(name="nla", site=(MODEL, 3))
    with pytest.raises(InputError, match=r"site mismatch: explainer sae reads .* layer 2 .* explainer nla reads .* layer 3"):
        check_same_site(ex, nla_like)
    with pytest.raises(InputError, match="site mismatch"):
        check_same_site(ex, read_dataset_sidecar(data["other_layer"]))
    with pytest.raises(InputError, match="site mismatch"):
        check_same_site(ex, ("other-org/other-model", 2))
    assert check_same_site(ex, data["train"]) == Site(MODEL, 2, D)
    assert check_same_site(ex, ("/local/copy/of/tiny-model", 2)).layer == 2  # a hub id and a local copy match


# ----------------------------------------------------------------------------------------------- CLI / bad input
def _cli(argv, capsys):
    from nla_audit.cli import main

    code = main(argv)
    return code, capsys.readouterr()


def test_cli_train_label_explain(tmp_path, data, capsys):
    out = tmp_path / "s"
    code, io = _cli(["sae", "train", "--data", str(data["train"]), "--held-out", str(data["test"]), "--out", str(out),
                     "--k", "4", "--steps", "20", "--batch-size", "128", "--quiet", "--layer", "2", "--model", MODEL], capsys)
    assert code == 0 and "fve_nrm" in io.out and "dead latents" in io.out
    code, io = _cli(["sae", "label", "--sae", str(out), "--data", str(data["train"]), "--labeller", "offline"], capsys)
    assert code == 0 and "offline proxy" in io.out
    code, io = _cli(["sae", "explain", "--sae", str(out), "--vectors", str(data["test"]), "--limit", "2", "--json"], capsys)
    assert code == 0 and len(io.out.splitlines()) == 2 and "#" in json.loads(io.out.splitlines()[0])["explanation"]


@pytest.mark.parametrize("case", ["missing_dir", "malformed_dir", "wrong_layer", "wrong_model", "mixed_sites",
                                  "shared_docs", "label_other_site", "not_an_sae_out"])
def test_cli_bad_input_is_one_line(case, tmp_path, data, trained, capsys):
    train = ["sae", "train", "--data", str(data["train"]), "--out", str(tmp_path / "s"), "--steps", "2",
             "--batch-size", "64", "--k", "4", "--quiet"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cfg.json").write_text("{oops")
    (bad / "sae_weights.safetensors").write_bytes(b"junk")
    (bad / "keep.txt").write_text("x")
    argv, msg = {
        "missing_dir": (["sae", "explain", "--sae", str(tmp_path / "nope"), "--vectors", str(data["test"])], "does not exist"),
        "malformed_dir": (["sae", "explain", "--sae", str(bad), "--vectors", str(data["test"])], "cfg.json is not valid JSON"),
        "wrong_layer": (train + ["--layer", "5"], "not of layer 5"),
        "wrong_model": (train + ["--model", "other/model"], "not of other/model"),
        "mixed_sites": (train + ["--data", str(data["other_layer"])], "holds activations of"),
        "shared_docs": (train + ["--held-out", str(data["train"])], "shares 150 documents"),
        "label_other_site": (["sae", "label", "--sae", str(trained[0]), "--data", str(data["other_layer"]),
                              "--labeller", "offline"], "layer 3"),
        "not_an_sae_out": (["sae", "train", "--data", str(data["train"]), "--out", str(bad.parent), "--quiet"],
                           "is not an SAE folder"),
    }[case]
    code, io = _cli(argv, capsys)
    assert code == 2 and io.err.startswith("nla-audit sae: error: ") and msg in io.err, io.err
    assert len(io.err.strip().splitlines()) == 1 and "Traceback" not in io.err
    assert not (tmp_path / "s").exists()


def test_errors_are_nla_audit_errors():
    from nla_audit.baselines.sae_train import SAETrainConfig

    with pytest.raises(NLAAuditError, match="unknown SAE architecture"):
        SAETrainConfig(data=("x",), out="y", arch="relu")


def test_shipped_default_sae_explains_its_site():
    from nla_audit.baselines.sae import default_sae_dir

    if default_sae_dir() is None:
        pytest.skip("no SAE shipped for the embedded default (docs/sae.md, 'Shipped default')")
    ex = SAEExplainer.from_dir("default", top_n=4)
    assert ex.site == ("HuggingFaceTB/SmolLM2-135M-Instruct", 20) and ex.warning is None
    text = ex.describe(torch.randn(1, 576) * 10)[0]
    assert 1 <= len(text.splitlines()) <= 4 and text.startswith("#")


def test_model_aliases_are_one_site():
    """`--model smollm2` and the shipped NLA's hub id name one model (an alias once failed the site check)."""
    from nla_audit.baselines.sae import Site
    from nla_audit.models import canonical_model_name

    assert canonical_model_name("smollm2") == canonical_model_name("default") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert Site("smollm2", 20).same_as(Site("HuggingFaceTB/SmolLM2-135M-Instruct", 20))
    assert not Site("smollm2", 20).same_as(Site("Qwen/Qwen2.5-7B-Instruct", 20))
