"""Training runs, configs and the SFT stages: LR schedule, config checks, AR/AV SFT steps, exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nla_audit.errors import ConfigError
from nla_audit.training.config import load_config, to_dict
from nla_audit.training.grpo import GRPOConfig
from nla_audit.training.run import data_order, lr_at
from nla_audit.training.sft import SFTConfig, av_batch, response_nll
from tests.builders import tiny_ar_sft_parquet


def test_data_order_is_a_function_of_step():
    a = [data_order(10, 3, s, 4).tolist() for s in range(5)]
    assert a == [data_order(10, 3, s, 4).tolist() for s in range(5)]
    flat = sum(a[:2], []) + a[2][:2]
    assert sorted(flat) == list(range(10))  # first epoch covers every row once


def test_lr_schedule_constant_by_default_and_cosine_to_its_floor():
    assert [lr_at(s, 1.0, 4) for s in (0, 3, 50)] == [0.25, 1.0, 1.0]
    assert [lr_at(s, 1.0, 4, 100) for s in (3, 99)] == [1.0, 1.0]  # floor 1: constant, whatever the length
    cos = [lr_at(s, 2.0, 4, 100, floor=0.1) for s in range(100)]
    assert cos[0] == 0.5 and cos[3] == 2.0  # the same warm-up, then the decay starts at the base LR
    assert all(a >= b for a, b in zip(cos[3:], cos[4:]))  # never rises after warm-up
    assert math.isclose(lr_at(100, 2.0, 4, 100, floor=0.1), 0.2) and math.isclose(cos[52], 1.1)  # floor; halfway
    with pytest.raises(ConfigError, match="av_lr_floor"):
        GRPOConfig(data="x", run_dir="y", av="a", ar="b", av_lr_floor=1.5)


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(SFTConfig, None, ["data=x", "run_dir=y", "learning_rate=1"])
    with pytest.raises(ConfigError, match="lr"):
        load_config(SFTConfig, None, ["data=x", "run_dir=y", "lr=5"])
    with pytest.raises(ConfigError, match="group_size"):
        load_config(GRPOConfig, None, ["data=x", "run_dir=y", "av=a", "ar=b", "group_size=1"])
    p = tmp_path / "c.yaml"
    p.write_text("data: d\nrun_dir: r\nsteps: 7\n")
    assert load_config(SFTConfig, p, ["steps=9"]).steps == 9


def test_training_device_is_resolved_and_checked():
    from nla_audit.errors import InputError
    from nla_audit.training.run import with_device

    cfg = load_config(SFTConfig, None, ["data=x", "run_dir=y"])
    assert cfg.device == "auto"
    assert with_device(cfg).device == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        with_device(load_config(SFTConfig, None, ["data=x", "run_dir=y", "device=tpu"]))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            with_device(load_config(GRPOConfig, None, ["data=x", "run_dir=y", "av=a", "ar=b", "device=cuda"]))
    # the frozen base follows the device: bf16 without native CPU support made a forward + backward ~30x slower
    from nla_audit.models import resolve_dtype

    for c in (cfg, load_config(GRPOConfig, None, ["data=x", "run_dir=y", "av=a", "ar=b"])):
        assert c.base_dtype == "auto" and resolve_dtype(c.base_dtype, "cpu") == torch.float32
        assert resolve_dtype(c.base_dtype, "cuda") == torch.bfloat16
        # the run dir records the dtype used, not "auto"
        assert with_device(c).base_dtype == ("bfloat16" if torch.cuda.is_available() else "float32")


def _ar_step_loss(tiny_model_dir, texts, gold, steps):
    from nla_audit.metrics import mse_nrm
    from nla_audit.training.nla_models import as_reconstructor, build_ar

    lm, inner, head, tok = build_ar(str(tiny_model_dir), 2, 4, 8.0)
    ar = as_reconstructor(inner, head, tok, 2, 64)
    params = [p for p in lm.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    ids, mask = ar.encode(texts)
    losses = []
    for _ in range(steps):
        loss = mse_nrm(ar(ids, mask), gold, 8.0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_ar_sft_step_lowers_loss(tiny_model_dir):
    gold = torch.randn(4, 64)
    losses = _ar_step_loss(tiny_model_dir, ["alpha beta", "gamma", "delta epsilon zeta", "eta"], gold, 3)
    assert losses[-1] < losses[0]


def test_av_sft_step_lowers_loss_and_reaches_injected_row(tiny_model_dir):
    from nla_audit.injection import av_prompt_ids, build_token_meta, injecting
    from nla_audit.training.nla_models import build_av

    lm, tok = build_av(str(tiny_model_dir), 4, 8.0)
    tokens = build_token_meta(tok)
    prompt = av_prompt_ids(tok, __import__("nla_audit.sidecar").sidecar.AV_TEMPLATE, tokens.injection_char)
    ids, attn, lab = av_batch(tok, prompt, ["<explanation>\nfoo bar\n</explanation>"] * 2, 256, tok.pad_token_id)
    v = torch.randn(2, 64, requires_grad=True)
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        with injecting(lm, tokens, v, 4.0):
            loss = response_nll(lm, ids, attn, lab)
        opt.zero_grad()
        v.grad = None
        loss.backward()
        assert v.grad is not None and v.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_resume_after_kill_matches_uninterrupted(tiny_model_dir, tmp_path, monkeypatch):
    """Train 4 steps straight vs 2 steps, 'kill', resume to 4: identical weights and metrics."""
    from nla_audit.training.sft import train_ar_sft

    data = tiny_ar_sft_parquet(tiny_model_dir, tmp_path)
    common = dict(data=str(data), model=str(tiny_model_dir), batch_size=4, lora_rank=2, save_every=2, eval_every=2,
                  warmup_steps=1, base_dtype="float32")
    train_ar_sft(SFTConfig(run_dir=str(tmp_path / "a"), steps=4, **common), progress=False)
    train_ar_sft(SFTConfig(run_dir=str(tmp_path / "b"), steps=2, **common), progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train_ar_sft(SFTConfig(run_dir=str(tmp_path / "b"), steps=4, **common), progress=False)
    train_ar_sft(SFTConfig(run_dir=str(tmp_path / "b"), steps=4, **common), resume=True, progress=False)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "ar" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "b" / "ar" / "adapter.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == 4
    assert (tmp_path / "a" / "curves.png").exists()
    resolved = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device: {resolved}" in (tmp_path / "b" / "resolved_config.yaml").read_text()  # 'auto' recorded as resolved


def test_ar_sft_continues_an_exported_ar_and_keeps_its_baselines(tiny_model_dir, tmp_path):
    """init_from: the AR starts from the checkpoint (its head, not the identity), keeps the parent's fve baselines
    and lists the parent's training data."""
    from safetensors.torch import load_file, save_file

    from nla_audit.sidecar import read_model_sidecar
    from nla_audit.training.sft import train_ar_sft, train_av_sft
    from tests.builders import build_tiny_nla

    data = tiny_ar_sft_parquet(tiny_model_dir, tmp_path)
    _, parent = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    pmeta = read_model_sidecar(parent, "ar")
    parent_head = torch.randn(pmeta.d_model, pmeta.d_model)
    save_file({"weight": parent_head}, str(parent / "value_head.safetensors"))
    cfg = SFTConfig(data=str(data), run_dir=str(tmp_path / "refit"), model=str(tiny_model_dir), steps=1,
                    batch_size=4, lr=1e-9, head_lr=1e-9, warmup_steps=1, base_dtype="float32", init_from=str(parent))
    out = train_ar_sft(cfg, progress=False)
    meta_out = read_model_sidecar(out, "ar")
    assert meta_out.baseline_rawvar == pmeta.baseline_rawvar and meta_out.mean_direction == pmeta.mean_direction
    assert str(data) in meta_out.trained_on and set(pmeta.trained_on) <= set(meta_out.trained_on)
    assert meta_out.adapter["rank"] == pmeta.adapter["rank"]
    head = load_file(str(out / "value_head.safetensors"))["weight"]
    torch.testing.assert_close(head, parent_head, atol=1e-5, rtol=0)  # lr ~0: the parent's head, not the identity
    from nla_audit.errors import InputError

    with pytest.raises(InputError, match="stage"):  # an AR-SFT parquet is not AV-SFT data
        train_av_sft(SFTConfig(data=str(data), run_dir=str(tmp_path / "av"), init_from=str(parent)), progress=False)


def test_av_sft_continues_an_exported_av_with_its_rank_and_injection_scale(tiny_model_dir, tmp_path):
    """init_from for the AV (expert iteration): the adapter starts from the parent's (lr ~0 leaves it there, not a
    fresh rank-16 LoRA), the parent's injection scale is kept rather than re-derived from the data, and the
    parent's training data and training cost are listed."""
    from safetensors.torch import load_file

    from nla_audit.sidecar import read_model_sidecar
    from nla_audit.training.sft import train_av_sft
    from tests.builders import build_tiny_nla, tiny_av_sft_parquet

    data = tiny_av_sft_parquet(tiny_model_dir, tmp_path)
    parent, _ = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2, injection_scale=7.0, rank=4,
                               training={"wall_time_s": 12.0, "total_wall_time_s": 12.0, "stages": {"parent-run": 12.0}})
    out = train_av_sft(SFTConfig(data=str(data), run_dir=str(tmp_path / "ei"), model=str(tiny_model_dir), steps=1,
                                 batch_size=2, lr=1e-9, warmup_steps=1, base_dtype="float32", eval_rows=2,
                                 init_from=str(parent)), progress=False)
    meta, pmeta = read_model_sidecar(out, "av"), read_model_sidecar(parent, "av")
    # the parent's run and this one: a continued NLA's cost includes what its parent cost
    assert "parent-run" in meta.training["stages"] and len(meta.training["stages"]) == 2
    assert meta.training["total_wall_time_s"] == pytest.approx(12.0 + meta.training["wall_time_s"], abs=0.2)
    assert meta.injection_scale == 7.0 and meta.adapter["rank"] == 4 and meta.training["init_from"] == str(parent)
    assert str(data) in meta.trained_on and set(pmeta.trained_on) <= set(meta.trained_on)
    a, b = load_file(str(out / "adapter.safetensors")), load_file(str(parent / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resume_counts_a_key_the_saved_run_lacks_as_its_default(tmp_path):
    """A config key added after a run was saved must not lock that run out of --resume (at its default)."""
    import yaml

    from nla_audit.training.config import config_defaults
    from nla_audit.training.run import CKPT, RunDir

    cfg = GRPOConfig(data="d", run_dir=str(tmp_path), av="a", ar="b")
    old = {k: v for k, v in to_dict(cfg).items() if k != "av_lr_floor"}  # saved before the key existed
    (tmp_path / CKPT).mkdir(parents=True)
    (tmp_path / CKPT / "state.pt").write_text("x")
    (tmp_path / "resolved_config.yaml").write_text(yaml.safe_dump(old))
    RunDir(tmp_path, to_dict(cfg), True, config_defaults(cfg))  # the default: same run
    (tmp_path / "resolved_config.yaml").write_text(yaml.safe_dump(old))
    changed = GRPOConfig(data="d", run_dir=str(tmp_path), av="a", ar="b", av_lr_floor=0.5)
    with pytest.raises(ConfigError, match="av_lr_floor"):
        RunDir(tmp_path, to_dict(changed), True, config_defaults(changed))
    with pytest.raises(ConfigError, match="av_lr_floor"):  # without defaults, the old strict comparison
        RunDir(tmp_path, to_dict(cfg), True)
