"""`nla-audit bench` on a tiny setup: tiny random Llama, an untrained tiny NLA at layer 2, an SAELens SAE trained
on the tiny model's layer-2 activations; one eval task with few items. Asserts the report is complete (every
condition has a score), the site check, the missing-labels warning and bad-input lines."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

from nla_audit.errors import InputError
from nla_audit.evals.bench import BenchConfig, pair_training_seconds, run_bench


@pytest.fixture(scope="module")
def tiny_acts(tiny_model_dir, tmp_path_factory):
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target
    from tests.builders import text_corpus

    root = tmp_path_factory.mktemp("bench_acts")
    target = load_target(str(tiny_model_dir))
    out = {}
    for layer in (1, 2):
        out[layer] = root / f"l{layer}.parquet"
        extract_activations(ExtractConfig(out=str(out[layer]), corpus=str(text_corpus(root / "c.jsonl", n_docs=8)),
                                          layer=layer, all_positions=True, min_position=1), target=target,
                            progress=False)
    return out


def _train_sae(acts, out):
    from nla_audit.baselines.sae_train import SAETrainConfig, train_sae

    train_sae(SAETrainConfig(data=(str(acts),), out=str(out), k=8, steps=20, batch_size=64, lr=3e-3), progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_sae(tiny_acts, tmp_path_factory):
    from nla_audit.baselines.sae_labels import label_sae

    out = _train_sae(tiny_acts[2], tmp_path_factory.mktemp("bench_sae") / "sae")
    label_sae(out, [str(tiny_acts[2])], n_contexts=3)
    return out


def test_bench_writes_a_complete_report(tiny_nla, tiny_sae, tiny_acts, tmp_path):
    av, ar = tiny_nla
    bench_md = tmp_path / "BENCH.md"
    bench_md.write_text("# Benchmarks\n\nolder entry\n")
    cfg = BenchConfig(nla=(("tiny", av, ar),), sae=str(tiny_sae), tasks=("classification",), limit=1, probe_train=4,
                      data=str(tiny_acts[2]), max_new_tokens=5, out=str(tmp_path / "report"),
                      benchmarks=str(bench_md), train_time=(("tiny", 90.0),))
    out = run_bench(cfg, progress=False)

    for name in ("report.md", "results.parquet", "fve.png", "scores.png", "evals_vs_fve.png"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "logs").glob("*.eval"))
    df = pd.read_parquet(out / "results.parquet")
    recon = df[df["task"] == "reconstruction"]
    # token-lookup: fitted on the SAE's training parquet, the one training file the sidecars name that exists here
    assert set(recon["explainer"]) == {"constant", "token-lookup", "nla", "nla-shuffled", "sae", "sae-decoder"}
    ev = df[(df["task"] == "classification") & (df["group"] == "all")]
    assert set(ev["explainer"]) == {"nla", "nla-shuffled", "sae", "probe", "text"}
    assert df["score"].notna().all() and ((df["ci_low"] <= df["score"]) & (df["score"] <= df["ci_high"])).all()
    sae_row, dec_row = (recon[recon["explainer"] == e].iloc[0] for e in ("sae", "sae-decoder"))
    assert dec_row["score"] > 0 and dec_row["l0"] > 0  # a trained SAE reconstructs better than the mean
    assert sae_row["score"] <= dec_row["score"] + 1e-6 and sae_row["l0"] <= 8  # only the latents its text lists
    assert recon["b_rv"].nunique() == 1
    assert recon[recon["explainer"] == "nla"].iloc[0]["train_s"] == 90.0
    assert (recon.loc[recon["explainer"] != "constant", "s_per_activation"] > 0).all()

    text = bench_md.read_text()
    assert text.startswith("# Benchmarks\n\nolder entry")  # appended, not overwritten
    table = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert len(table) == 1 + 8  # header + nla, floor, sae, sae-decoder, constant, token-lookup, probe, text
    assert all("nan" not in ln for ln in table)
    assert "1.5 min" in text and "warning" not in text.lower()  # the labelled SAE needs no warning
    report = (out / "report.md").read_text()
    assert "## Headline" in report
    assert "8 of 8 held-out documents appear in the 1 training parquet(s)" in report  # the SAE trained on them


def test_unlabelled_sae_is_flagged_in_the_report(tiny_nla, tiny_sae, tiny_acts, tmp_path):
    sae = shutil.copytree(tiny_sae, tmp_path / "sae")
    (sae / "labels.json").unlink()
    cfg = BenchConfig(nla=(), sae=str(sae), tasks=(), data=str(tiny_acts[2]), out=str(tmp_path / "r"),
                      benchmarks=None)
    out = run_bench(cfg, progress=False)
    report = (out / "report.md").read_text()
    assert "warning" in report and "no latent labels" in report
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["explainer"]) >= {"sae"}


def test_sae_on_another_layer_is_refused_before_running(tiny_nla, tiny_acts, tmp_path):
    av, ar = tiny_nla
    sae = _train_sae(tiny_acts[1], tmp_path / "sae_l1")
    cfg = BenchConfig(nla=(("tiny", av, ar),), sae=str(sae), tasks=("classification",), data=str(tiny_acts[2]),
                      out=str(tmp_path / "r"), benchmarks=str(tmp_path / "B.md"))
    with pytest.raises(InputError, match="site mismatch"):
        run_bench(cfg, progress=False)
    assert not (tmp_path / "r").exists() and not (tmp_path / "B.md").exists()


def test_heldout_parquet_of_another_layer_is_refused(tiny_nla, tiny_acts, tmp_path):
    av, ar = tiny_nla
    cfg = BenchConfig(nla=(("tiny", av, ar),), sae=None, tasks=(), data=str(tiny_acts[1]), out=str(tmp_path / "r"),
                      benchmarks=None)
    with pytest.raises(InputError, match="site mismatch"):
        run_bench(cfg, progress=False)
    assert not (tmp_path / "r").exists()


def test_pair_training_seconds():
    from types import SimpleNamespace as NS

    sft = NS(stage="sl", training={"total_wall_time_s": 100.0})
    ar = NS(stage="sl", training={"total_wall_time_s": 50.0})
    rl = NS(stage="rl", training={"total_wall_time_s": 400.0})
    assert pair_training_seconds(sft, ar) == 150.0
    assert pair_training_seconds(rl, ar) == 400.0  # RL's total already includes both SFT stages
    assert pair_training_seconds(NS(stage="sl", training={}), ar) is None
    shared = {"a": 100.0, "b": 50.0, "rl": 250.0}  # with stage maps: an RL AV and its co-trained AR share runs
    assert pair_training_seconds(NS(stage="rl", training={"stages": shared}),
                                 NS(stage="sl", training={"stages": dict(shared)})) == 400.0
    assert pair_training_seconds(NS(stage="sl", training={"stages": {"a": 100.0}}),
                                 NS(stage="sl", training={"stages": {"b": 50.0}})) == 150.0


def test_cost_counts_shared_stages_once(tmp_path):
    """An RL run started from the AV and AR of an earlier RL run must not count that run's cost twice."""
    from types import SimpleNamespace as NS

    from nla_audit.training.run import RunDir, cost

    av_sft = cost(RunDir(tmp_path / "av_sft", {}, False), "cpu")
    ar_sft = cost(RunDir(tmp_path / "ar_sft", {}, False), "cpu")
    av_sft["stages"] = {k: 100.0 for k in av_sft["stages"]}
    ar_sft["stages"] = {k: 50.0 for k in ar_sft["stages"]}
    rl_run = RunDir(tmp_path / "rl", {}, False)
    rl = cost(rl_run, "cpu", (NS(training=av_sft), NS(training=ar_sft)))
    assert math.isclose(rl["total_wall_time_s"], 150.0, abs_tol=1.0) and len(rl["stages"]) == 3
    again = cost(RunDir(tmp_path / "rl2", {}, False), "cpu", (NS(training=rl), NS(training=rl)))
    assert math.isclose(again["total_wall_time_s"], rl["total_wall_time_s"], abs_tol=1.0) and len(again["stages"]) == 4
    legacy = {"total_wall_time_s": 400.0}  # sidecars from before the stage map: one lineage per distinct total
    old = cost(RunDir(tmp_path / "rl3", {}, False), "cpu", (NS(training=legacy), NS(training=dict(legacy))))
    assert math.isclose(old["total_wall_time_s"], 400.0, abs_tol=1.0)
    assert cost(rl_run, "cpu", (NS(training={}),))["total_wall_time_s"] is None
    assert RunDir(tmp_path / "rl", {}, False).run_id == rl_run.run_id  # the id survives reopening the run dir


@pytest.mark.parametrize("argv, needle", [
    (["bench", "--nla", "a", "/nonexistent/av", "/nonexistent/ar", "--no-append"], "nonexistent"),
    (["bench", "--tasks", "nope", "--sae", "none", "--no-append"], "unknown eval task"),
    (["bench", "--nla", "a", "x", "y", "--nla", "a", "x", "y"], "NLA names repeat"),
    (["bench", "--docs", "0"], ">= 1"),
    (["bench", "--train-time", "a", "soon"], "SECONDS a number"),
])
def test_bad_input_is_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    from nla_audit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "bench-report").exists() and not (tmp_path / "BENCHMARKS.md").exists()


def test_wall_time_sums_resumed_sessions(tmp_path):
    from nla_audit.training.run import RunDir, wall_time_s

    legacy = [{"step": s, "elapsed_s": t} for s, t in ((1, 10.0), (2, 20.0), (3, 5.0), (4, 12.5))]
    assert math.isclose(wall_time_s(legacy), 32.5)  # unstamped records: a resume restarts elapsed_s
    run = RunDir(tmp_path / "r", {"steps": 3}, resume=False)
    run._prior_s = 100.0  # as if an earlier session had run for 100 s
    run.log({"step": 1, "elapsed_s": 500.0})  # elapsed_s larger than before: the stamp is what counts
    assert 100.0 <= run.wall_time_s() < 160.0


def test_out_folder_that_is_not_a_report_is_refused(tiny_nla, tiny_acts, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    cfg = BenchConfig(nla=(("tiny", *tiny_nla),), sae=None, tasks=(), data=str(tiny_acts[2]),
                      out=str(tmp_path / "mine"), benchmarks=None)
    with pytest.raises(InputError, match="not an nla-audit bench report"):
        run_bench(cfg, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_tasks_all_expands_and_max_rows_caps(tiny_nla, tiny_acts, tmp_path, monkeypatch):
    from nla_audit.evals import cli

    seen = []
    monkeypatch.setattr(cli, "run_tasks", lambda names, sets, log_dir: seen.extend(names) or [])
    cfg = BenchConfig(nla=(("tiny", *tiny_nla),), sae=None, tasks=("all",), data=str(tiny_acts[2]), max_rows=3,
                      max_new_tokens=3, out=str(tmp_path / "r"), benchmarks=None)
    out = run_bench(cfg, progress=False)
    assert seen == ["classification", "suffix_prediction", "user_modeling", "cot_hints"]
    df = pd.read_parquet(out / "results.parquet")
    assert (df.loc[df["explainer"] == "nla", "n"] == 3).all()


def test_derangement_and_floor_size(tiny_nla):
    import torch

    from nla_audit.evals._fve import Heldout, derangement, nla_reconstruction
    from nla_audit.nla import NLA

    for n in (2, 3, 17):
        d = derangement(n, seed=n)
        assert sorted(d.tolist()) == list(range(n)) and bool((d != torch.arange(n)).all())
    nla = NLA.load(*tiny_nla, dtype="float32")
    with pytest.raises(InputError, match="at least 2"):
        nla_reconstruction(nla, Heldout(torch.randn(1, 64), ["d"], "one"), "tiny", 1.0, shuffled=True)


def test_token_lookup_uses_only_training_data_of_the_site(tiny_acts, tiny_model_dir):
    """An adapted NLA lists its parent's data (another model or layer): the lookup must not mix sites in."""
    from nla_audit.evals import _fve
    from nla_audit.models import load_tokenizer
    from nla_audit.sidecar import read_dataset_sidecar

    ext = read_dataset_sidecar(tiny_acts[2])["extraction"]
    data = _fve.heldout_from_parquet(str(tiny_acts[2]), ext["base_model"], 2)
    tok = load_tokenizer(str(tiny_model_dir))
    paths = [str(tiny_acts[1]), str(tiny_acts[2])]
    both = _fve.token_lookup_reconstruction(paths, data, tok, 8.0, 1.0)
    here = _fve.token_lookup_reconstruction(paths, data, tok, 8.0, 1.0, site=(ext["base_model"], 2))
    assert both.extra["train_rows"] == 2 * here.extra["train_rows"]
    assert _fve.token_lookup_reconstruction([str(tiny_acts[1])], data, tok, 8.0, 1.0, site=(ext["base_model"], 2)) is None


def test_bootstrap_over_documents_widens_for_correlated_positions():
    import numpy as np

    from nla_audit.evals._fve import bootstrap_ci

    rng = np.random.default_rng(0)
    doc_effect = rng.normal(0, 1, 30)
    x = np.repeat(doc_effect, 4) + rng.normal(0, 0.1, 120)  # 4 near-identical positions per document
    docs = np.repeat([f"d{i:03d}" for i in range(30)], 4)
    lo_r, hi_r = bootstrap_ci(x)
    lo_d, hi_d = bootstrap_ci(x, groups=docs)
    assert lo_d < x.mean() < hi_d
    assert (hi_d - lo_d) > 1.5 * (hi_r - lo_r)  # ~2x: 30 independent documents, not 120 independent rows
    singles = [f"s{i:03d}" for i in range(120)]  # one row per document (in sorted order): the row bootstrap exactly
    assert bootstrap_ci(x, groups=singles) == (lo_r, hi_r)
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_ci(x, groups=docs[:10])
    # unequal documents: the interval is about the mean over rows, not the mean of per-document means
    y = np.concatenate([np.zeros(50), np.ones(450)]) + rng.normal(0, 0.01, 500)
    uneven = [f"a{i}" for i in range(50)] + [f"b{i // 9}" for i in range(450)]  # 50 one-row docs, 50 nine-row docs
    lo, hi = bootstrap_ci(y, groups=uneven)
    assert 0.8 < lo < y.mean() < hi < 0.97  # the mean of document means would be ~0.5


def test_bench_appends_to_benchmarks_only_when_asked():
    import argparse

    from nla_audit.evals.bench import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["bench", "--tasks", "none", "--sae", "none"]
    assert config_from_args(parser.parse_args(base)).benchmarks is None
    assert config_from_args(parser.parse_args([*base, "--append"])).benchmarks == "BENCHMARKS.md"
    assert config_from_args(parser.parse_args([*base, "--no-append"])).benchmarks is None  # the old opt-out still parses
