"""The pipeline (stage order, skipping finished stages, settings passed on) and datagen."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nla_audit.errors import ConfigError
from nla_audit.training.sft import SFTConfig


def _finished_sft_stages(run: Path) -> None:
    """A pipeline run dir whose data and both SFT stages (5 steps each) look done, so only RL would run."""
    for rel in ("data/base.parquet", "data/rl.parquet", "ar_sft/ar/nla_meta.yaml", "av_sft/av/nla_meta.yaml"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("x")
    for stage in ("ar_sft", "av_sft"):
        (run / stage / "metrics.jsonl").write_text(json.dumps({"step": 5}) + "\n")


def test_pipeline_skips_finished_stages_and_passes_rl_settings(tmp_path, monkeypatch):
    """A re-run skips stages whose outputs exist; the GPU group settings reach GRPO."""
    import nla_audit.training.grpo as grpo
    from nla_audit.training.pipeline import PipelineConfig, run_pipeline

    _finished_sft_stages(tmp_path)
    seen = []
    monkeypatch.setattr(grpo, "train_rl", lambda cfg, resume, progress: seen.append((cfg, resume)))
    out = run_pipeline(PipelineConfig(run_dir=str(tmp_path), ar_steps=5, av_steps=5, rl_steps=7, rl_prompts_per_step=16,
                                      rl_group_size=8, rl_micro_batch=32, device="cpu"), progress=False)
    (cfg, resume), = seen
    assert (cfg.steps, cfg.prompts_per_step, cfg.group_size, cfg.micro_batch) == (7, 16, 8, 32) and not resume
    assert cfg.av == str(tmp_path / "av_sft" / "av") and cfg.eval_data is None  # no test split written: no curve
    assert out == {"av": tmp_path / "rl" / "av", "ar": tmp_path / "rl" / "ar"}


def test_pipeline_rl2_continues_from_the_first_rl_stage(tmp_path, monkeypatch):
    """rl2 starts from rl's exports with its own batch, AV learning rate and seed; rl2 without rl is refused."""
    from nla_audit.training import grpo
    from nla_audit.training.pipeline import PipelineConfig, run_pipeline

    _finished_sft_stages(tmp_path)
    seen = []
    monkeypatch.setattr(grpo, "train_rl", lambda cfg, resume, progress: seen.append(cfg))
    out = run_pipeline(PipelineConfig(run_dir=str(tmp_path), ar_steps=5, av_steps=5, rl_steps=7, rl_prompts_per_step=16,
                                      rl_group_size=8, rl2_steps=9, rl2_prompts_per_step=32, rl2_av_lr=2e-4,
                                      rl2_seed=3, device="cpu"), progress=False)
    first, second = seen
    assert (first.run_dir, first.av_lr, first.seed) == (str(tmp_path / "rl"), 5e-5, 0)
    assert (second.run_dir, second.steps, second.prompts_per_step, second.group_size) == (str(tmp_path / "rl2"), 9, 32, 8)
    assert (second.av, second.ar) == (str(tmp_path / "rl" / "av"), str(tmp_path / "rl" / "ar"))
    assert (second.av_lr, second.seed) == (2e-4, 3)
    assert out == {"av": tmp_path / "rl2" / "av", "ar": tmp_path / "rl2" / "ar"}
    # a finished first stage is not run again (nor re-exported) when the pipeline re-runs for rl2
    (tmp_path / "rl" / "av").mkdir(parents=True)
    (tmp_path / "rl" / "av" / "nla_meta.yaml").write_text("x")
    (tmp_path / "rl" / "metrics.jsonl").write_text(json.dumps({"step": 7}) + "\n")
    seen.clear()
    run_pipeline(PipelineConfig(run_dir=str(tmp_path), ar_steps=5, av_steps=5, rl_steps=7, rl2_steps=9, device="cpu"),
                 progress=False)
    assert [c.run_dir for c in seen] == [str(tmp_path / "rl2")] and seen[0].av == str(tmp_path / "rl" / "av")
    with pytest.raises(ConfigError, match="rl2_steps"):
        PipelineConfig(run_dir=str(tmp_path), rl2_steps=5)


def test_pipeline_passes_the_ar_lora_rank_to_ar_sft_only(tmp_path, monkeypatch):
    import nla_audit.training.sft as sft
    from nla_audit.training.pipeline import PipelineConfig, run_pipeline

    for rel in ("data/base.parquet", "data/rl.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    seen = {}
    monkeypatch.setattr(sft, "train_ar_sft", lambda cfg, resume, progress: seen.setdefault("ar", cfg))
    monkeypatch.setattr(sft, "train_av_sft", lambda cfg, resume, progress: seen.setdefault("av", cfg))
    run_pipeline(PipelineConfig(run_dir=str(tmp_path), ar_steps=5, av_steps=5, ar_lora_rank=64, device="cpu"),
                 progress=False)
    assert (seen["ar"].lora_rank, seen["ar"].lora_alpha) == (64, 128.0)
    assert (seen["av"].lora_rank, seen["av"].lora_alpha) == (16, 32.0)
    with pytest.raises(ConfigError, match="ar_lora_rank"):
        PipelineConfig(run_dir=str(tmp_path), ar_lora_rank=0)


def test_datagen_writes_heldout_ar_eval_and_ar_sft_logs_its_curve(tiny_model_dir, tmp_path):
    """ar_eval.parquet holds test-split rows only (never a training document); AR SFT logs fve_nrm on it."""
    from nla_audit.errors import InputError
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.training.datagen import DatagenConfig, run_datagen
    from nla_audit.training.sft import train_ar_sft, train_av_sft
    from nla_audit.vectors import read_vectors
    from tests.builders import text_corpus

    base = tmp_path / "base.parquet"
    extract_activations(ExtractConfig(out=str(base), corpus=str(text_corpus(tmp_path / "c.jsonl", 30)), layer=2,
                                      min_position=5, positions_per_doc=3), target=load_target(str(tiny_model_dir)),
                        progress=False)
    counts = run_datagen(DatagenConfig(data=str(base), out_dir=str(tmp_path / "d"), eval_rows=4, dtype="float32"))
    ev = tmp_path / "d" / "ar_eval.parquet"
    assert counts["ar_eval"] == 4 and read_dataset_sidecar(ev)["stage"] == "ar_eval"
    docs = {name: set(read_vectors(p, ["doc_id"])[1]["doc_id"])
            for name, p in (("eval", ev), ("test", tmp_path / "base.test.parquet"),
                            *((s, tmp_path / "d" / f"{s}.parquet") for s in ("ar_sft", "av_sft", "rl")))}
    assert docs["eval"] <= docs["test"] and not docs["eval"] & (docs["ar_sft"] | docs["av_sft"] | docs["rl"])
    common = dict(model=str(tiny_model_dir), batch_size=4, lora_rank=2, eval_every=1, base_dtype="float32")
    train_ar_sft(SFTConfig(data=str(tmp_path / "d" / "ar_sft.parquet"), run_dir=str(tmp_path / "ar"), steps=2,
                           eval_data=str(ev), **common), progress=False)
    recs = [json.loads(x) for x in (tmp_path / "ar" / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(math.isfinite(r["eval_fve_nrm"]) for r in recs)
    with pytest.raises(InputError, match="expected stage 'ar_eval'"):
        train_ar_sft(SFTConfig(data=str(tmp_path / "d" / "ar_sft.parquet"), run_dir=str(tmp_path / "ar2"), steps=1,
                               eval_data=str(tmp_path / "d" / "ar_sft.parquet"), **common), progress=False)
    with pytest.raises(ConfigError, match="unset for AV SFT"):
        train_av_sft(SFTConfig(data=str(tmp_path / "d" / "av_sft.parquet"), run_dir=str(tmp_path / "av"), steps=1,
                               eval_data=str(ev), **common), progress=False)


def test_datagen_pool_sft_gives_both_sft_stages_both_splits(tiny_model_dir, tmp_path, monkeypatch):
    """--pool-sft: each SFT parquet holds both SFT splits' rows, names both parents; RL and test stay apart."""
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.training.datagen import DatagenConfig, run_datagen
    from nla_audit.vectors import read_vectors
    from tests.builders import text_corpus

    base = tmp_path / "base.parquet"
    extract_activations(ExtractConfig(out=str(base), corpus=str(text_corpus(tmp_path / "c.jsonl", 30)), layer=2,
                                      min_position=5, positions_per_doc=3), target=load_target(str(tiny_model_dir)),
                        progress=False)
    plain = run_datagen(DatagenConfig(data=str(base), out_dir=str(tmp_path / "p"), eval_rows=0, dtype="float32"))
    pooled = run_datagen(DatagenConfig(data=str(base), out_dir=str(tmp_path / "q"), eval_rows=0, dtype="float32",
                                       pool_sft=True))
    both = plain["av_sft"] + plain["ar_sft"]
    assert pooled["av_sft"] == pooled["ar_sft"] == both and pooled["rl"] == plain["rl"]
    docs = {s: set(read_vectors(tmp_path / d / f"{s}.parquet", ["doc_id"])[1]["doc_id"])
            for d in ("p",) for s in ("av_sft", "ar_sft", "rl")}
    for s in ("av_sft", "ar_sft"):
        got = set(read_vectors(tmp_path / "q" / f"{s}.parquet", ["doc_id"])[1]["doc_id"])
        assert got == docs["av_sft"] | docs["ar_sft"] and not got & docs["rl"]
        parents = read_dataset_sidecar(tmp_path / "q" / f"{s}.parquet")["parent_datasets"]
        assert [Path(x).name for x in parents] == ["base.av_sft.parquet", "base.ar_sft.parquet"]
    # a pipeline asked for the other pooling refuses to reuse this data (datagen would be skipped silently)
    import nla_audit.training.sft as sft
    from nla_audit.training.pipeline import PipelineConfig, run_pipeline

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    for f in (tmp_path / "q").iterdir():
        (run / "data" / f.name).symlink_to(f)
    (run / "data" / "base.parquet").symlink_to(base)
    ran = []
    for name in ("train_ar_sft", "train_av_sft"):
        monkeypatch.setattr(sft, name, lambda cfg, resume, progress: ran.append(cfg.data))
    with pytest.raises(ConfigError, match="made with pool_sft = True"):
        run_pipeline(PipelineConfig(run_dir=str(run), ar_steps=1, av_steps=1, device="cpu"), progress=False)
    assert ran == []
    run_pipeline(PipelineConfig(run_dir=str(run), ar_steps=1, av_steps=1, pool_sft=True, device="cpu"), progress=False)
    assert len(ran) == 2


def test_pipeline_passes_pool_sft_to_datagen(tmp_path, monkeypatch):
    import nla_audit.training.datagen as datagen
    import nla_audit.training.sft as sft
    from nla_audit.training.pipeline import PipelineConfig, run_pipeline

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "base.parquet").write_text("x")  # extraction done; datagen not yet
    seen = []
    monkeypatch.setattr(datagen, "run_datagen", lambda cfg: seen.append(cfg))
    for name in ("train_ar_sft", "train_av_sft"):
        monkeypatch.setattr(sft, name, lambda cfg, resume, progress: None)
    for pool in (False, True):
        run_pipeline(PipelineConfig(run_dir=str(tmp_path), ar_steps=1, av_steps=1, pool_sft=pool, device="cpu"),
                     progress=False)
    assert [c.pool_sft for c in seen] == [False, True]


def test_pipeline_init_from_continues_both_sft_stages(tmp_path, monkeypatch):
    """init_from names an NLA folder (or the shipped one) whose AV and AR the SFT stages continue."""
    import nla_audit.training.sft as sft
    from nla_audit.training.pipeline import PipelineConfig, init_dir, run_pipeline

    for rel in ("data/base.parquet", "data/rl.parquet", "nla/av/nla_meta.yaml", "nla/ar/nla_meta.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    seen = {}
    monkeypatch.setattr(sft, "train_ar_sft", lambda cfg, resume, progress: seen.setdefault("ar", cfg))
    monkeypatch.setattr(sft, "train_av_sft", lambda cfg, resume, progress: seen.setdefault("av", cfg))
    run_pipeline(PipelineConfig(run_dir=str(tmp_path), ar_steps=5, av_steps=5, ar_lora_rank=64,
                                init_from=str(tmp_path / "nla"), device="cpu"), progress=False)
    assert seen["ar"].init_from == str(tmp_path / "nla" / "ar") and seen["av"].init_from == str(tmp_path / "nla" / "av")
    assert seen["ar"].lora_rank == 16  # a continued AR keeps its own rank (build_ar reads it from the adapter)
    assert (init_dir("default") / "av" / "nla_meta.yaml").exists()
    with pytest.raises(ConfigError, match="init_from"):
        init_dir(str(tmp_path / "data"))
