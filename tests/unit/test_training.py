from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nla_audit.errors import ConfigError
from nla_audit.training.config import load_config, to_dict
from nla_audit.training.grpo import (GRPOConfig, clipped_surrogate, group_advantages, k3_kl, rollout_rewards)
from nla_audit.training.run import data_order, lr_at
from nla_audit.training.sft import SFTConfig, av_batch, response_nll


def test_group_advantages_are_zero_mean_per_group():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, -2.0, -2.0, -1.0, 0.5])
    adv = group_advantages(r, 4).view(2, 4)
    assert torch.allclose(adv.mean(1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(group_advantages(torch.full((4,), -2.0), 4), torch.zeros(4))  # all failed → no signal


def test_failure_reward_for_untagged_truncated_and_too_long():
    mse = torch.tensor([0.5, 0.5, 0.5, 0.5])
    r, done = rollout_rewards(["a", "b", "c", "d"], [True, False, True, True], [False, False, True, False],
                              [False, False, False, True], mse)
    assert r.tolist() == [-0.5, -2.0, -2.0, -2.0] and done.tolist() == [True, False, False, False]


def test_surrogate_and_kl():
    logp = torch.tensor([0.0, 0.0])
    assert torch.allclose(clipped_surrogate(logp, logp, torch.tensor([1.0, -1.0]), 0.2), torch.tensor([-1.0, 1.0]))
    big = clipped_surrogate(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]), 0.2)
    assert math.isclose(big.item(), -1.2, rel_tol=1e-6)  # clipped at 1 + eps for positive advantages
    assert k3_kl(torch.tensor([0.3]), torch.tensor([0.3])).item() == 0.0
    assert k3_kl(torch.tensor([0.1]), torch.tensor([-0.5])).item() > 0


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


def _tiny_ar_data(tiny_model_dir, tmp_path):
    """A small ar_sft parquet+sidecar made by the real datagen writer from real tiny-model activations."""
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target
    from tests.builders import text_corpus

    target = load_target(str(tiny_model_dir))
    base = tmp_path / "base.parquet"
    extract_activations(ExtractConfig(out=str(base), corpus=str(text_corpus(tmp_path / "c.jsonl", 8)), layer=2,
                                      min_position=5, positions_per_doc=3), target=target, progress=False)
    return base


def _tiny_rl_setup(tiny_model_dir, tmp_path):
    """(rl-stage activation parquet, untrained AV, AR) over the tiny model, for GRPO runs."""
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from tests.builders import build_tiny_nla

    base = _tiny_ar_data(tiny_model_dir, tmp_path)
    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    meta = read_dataset_sidecar(base)
    write_dataset_sidecar(base, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version")}, "stage": "rl"})
    return base, av, ar


def _tiny_ar_sft_data(tiny_model_dir, tmp_path):
    """An ar_sft parquet (explanations "text i") with its sidecar, over real tiny-model activations."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar

    base = _tiny_ar_data(tiny_model_dir, tmp_path)
    table = pq.read_table(base)
    table = table.append_column("explanation", pa.array([f"text {i}" for i in range(table.num_rows)]))
    data = tmp_path / "ar_sft.parquet"
    pq.write_table(table, data)
    meta = read_dataset_sidecar(base)
    write_dataset_sidecar(data, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version")},
                                 "stage": "ar_sft"})
    return data


def test_resume_after_kill_matches_uninterrupted(tiny_model_dir, tmp_path, monkeypatch):
    """Train 4 steps straight vs 2 steps, 'kill', resume to 4: identical weights and metrics."""
    from nla_audit.training.sft import train_ar_sft

    data = _tiny_ar_sft_data(tiny_model_dir, tmp_path)
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
    and lists the parent's training data; AV SFT refuses the key."""
    from safetensors.torch import load_file, save_file

    from nla_audit.sidecar import read_model_sidecar
    from nla_audit.training.sft import train_ar_sft, train_av_sft
    from tests.builders import build_tiny_nla

    data = _tiny_ar_sft_data(tiny_model_dir, tmp_path)
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
    with pytest.raises(ConfigError, match="init_from"):
        train_av_sft(SFTConfig(data=str(data), run_dir=str(tmp_path / "av"), init_from=str(parent)), progress=False)


def test_grpo_steps_run_and_resume(tiny_model_dir, tmp_path):
    from nla_audit.training.grpo import train_rl

    base, av, ar = _tiny_rl_setup(tiny_model_dir, tmp_path)
    cfg = dict(data=str(base), av=str(av), ar=str(ar), model=str(tiny_model_dir), prompts_per_step=2, group_size=2,
               max_new_tokens=6, save_every=1, base_dtype="float32")
    train_rl(GRPOConfig(run_dir=str(tmp_path / "rl"), steps=1, **cfg), progress=False)
    # resuming may add the held-out curve (eval keys are resumable) and change the frozen base's dtype (it follows
    # the device: a CPU run resumed on a GPU goes from float32 to bfloat16); base.parquet stands in for a test split
    train_rl(GRPOConfig(run_dir=str(tmp_path / "rl"), steps=3, eval_data=str(base), eval_every=2, eval_rows=3,
                        **{**cfg, "base_dtype": "bfloat16"}), resume=True, progress=False)
    recs = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3]
    warm = GRPOConfig.warmup_steps  # the reference's constant LR by default: only the warm-up ramp
    assert [r["av_lr"] for r in recs] == pytest.approx([GRPOConfig.av_lr * s / warm for s in (1, 2, 3)])
    assert [("eval_fve_nrm" in r) for r in recs] == [False, True, True]  # every eval_every steps and at the end
    assert all(math.isfinite(r["eval_fve_nrm"]) and math.isfinite(r["eval_fve_nrm_shuffled"]) for r in recs[1:])
    assert all(r["failed_rate"] == 1.0 and r["reward"] == -2.0 for r in recs)  # untrained: truncated → failure reward
    phases = ("rollout_s", "policy_s", "ar_s")  # where each step's time went, logged for GPU profiling
    assert all(min(r[k] for k in phases) >= 0 and sum(r[k] for k in phases) <= r["elapsed_s"] for r in recs)
    assert (tmp_path / "rl" / "av" / "nla_meta.yaml").exists() and (tmp_path / "rl" / "ar" / "value_head.safetensors").exists()


def test_grpo_cosine_lr_reaches_the_optimizer_and_fixes_steps_on_resume(tiny_model_dir, tmp_path):
    from nla_audit.training.grpo import train_rl

    base, av, ar = _tiny_rl_setup(tiny_model_dir, tmp_path)
    cfg = dict(data=str(base), av=str(av), ar=str(ar), model=str(tiny_model_dir), prompts_per_step=2, group_size=2,
               max_new_tokens=4, save_every=1, base_dtype="float32", warmup_steps=1, av_lr=1e-3, av_lr_floor=0.1)
    run = tmp_path / "rl"
    train_rl(GRPOConfig(run_dir=str(run), steps=3, **cfg), progress=False)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["av_lr"] for r in recs] == pytest.approx([1e-3, 1e-3, 0.55e-3])  # halfway down the cosine at step 3
    with pytest.raises(ConfigError, match="steps"):  # more steps would lift the decayed LR back up
        train_rl(GRPOConfig(run_dir=str(run), steps=5, **cfg), resume=True, progress=False)


def test_resume_counts_a_key_the_saved_run_lacks_as_its_default(tmp_path):
    """A config key added after a run was saved must not lock that run out of --resume (at its default)."""
    import yaml
    from nla_audit.training.run import CKPT, RunDir, config_defaults

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


def test_grpo_merged_sampler_samples_what_the_lora_policy_samples(tiny_model_dir, tmp_path):
    """Rollouts from the merged twin (the fast path) match rollouts from the LoRA policy itself (fp32)."""
    from nla_audit.training.grpo import train_rl

    base, av, ar = _tiny_rl_setup(tiny_model_dir, tmp_path)
    cfg = dict(data=str(base), av=str(av), ar=str(ar), model=str(tiny_model_dir), prompts_per_step=2, group_size=2,
               max_new_tokens=6, steps=2, save_every=2, base_dtype="float32", eval_data=str(base), eval_every=2,
               eval_rows=3)
    out = {}
    for merged in (True, False):
        run = tmp_path / f"rl_{merged}"
        train_rl(GRPOConfig(run_dir=str(run), merged_sampler=merged, **cfg), progress=False)
        out[merged] = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("mean_len", "reward", "failed_rate", "eval_fve_nrm"):
        assert [r.get(key) for r in out[True]] == pytest.approx([r.get(key) for r in out[False]], abs=1e-4), key


def test_heldout_eval_leaves_the_training_rng_alone(tiny_model_dir, tmp_path):
    """The held-out curve must not change the run it watches: the sampled eval draws from a forked RNG."""
    from nla_audit.av import ActivationVerbalizer
    from nla_audit.ar import ActivationReconstructor
    from nla_audit.training.grpo import heldout_eval
    from tests.builders import build_tiny_nla

    av_dir, ar_dir = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    av, ar = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32"), ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    gold = torch.randn(4, av.d_model)
    cfg = GRPOConfig(data="x", run_dir="x", av="x", ar="x", max_new_tokens=5, eval_temperature=1.0)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    first = heldout_eval(av, ar, gold, 1.0, cfg)
    assert torch.equal(state, torch.get_rng_state())
    assert heldout_eval(av, ar, gold, 1.0, cfg) == first  # fixed seed: the same rows give the same curve point
    assert set(first) == {"eval_fve_nrm", "eval_fve_nrm_shuffled", "eval_failed_rate"}


@pytest.mark.parametrize("ppo_epochs", [1, 2])
def test_policy_update_gradient_does_not_depend_on_micro_batch(tiny_model_dir, ppo_epochs):
    """Slicing the rollouts (to fit a larger group on a GPU) must give the one-pass loss and gradient."""
    from nla_audit.injection import av_prompt_ids, build_token_meta
    from nla_audit.sidecar import AV_TEMPLATE
    from nla_audit.training.grpo import SwappedLoRA, _frozen_logprobs, _row_chunks, _sequences, policy_update
    from nla_audit.training.nla_models import build_av

    lm, tok = build_av(str(tiny_model_dir), 4, 8.0, dtype=torch.float32)
    ref = SwappedLoRA(lm)
    for p in ref.params.values():  # live LoRA ≠ reference LoRA, so the KL term has a gradient
        torch.nn.init.normal_(p, std=0.05)
    meta = build_token_meta(tok)
    prompt = av_prompt_ids(tok, AV_TEMPLATE, meta.injection_char)
    responses = [torch.randint(100, 5000, (n,)).tolist() + [tok.eos_token_id] for n in (3, 7, 2, 5, 6)]
    ids, attn, lab = _sequences(tok, prompt, responses, tok.eos_token_id)
    v, adv = torch.randn(5, 64), torch.randn(5)
    cfg = GRPOConfig(data="x", run_dir="x", av="x", ar="x", kl_coef=0.5, ppo_epochs=ppo_epochs)
    out = {}
    for mb in (0, 2):
        rows = _row_chunks(5, mb)
        ref_logp = [_frozen_logprobs(lm, meta, v[c], 3.0, ids[c], attn[c], lab[c], ref) for c in rows]
        old = [_frozen_logprobs(lm, meta, v[c], 3.0, ids[c], attn[c], lab[c]) for c in rows] if ppo_epochs > 1 else None
        loss, kl = policy_update(lm, meta, v, 3.0, ids, attn, lab, adv, ref_logp, rows, cfg, old)
        out[mb] = (loss, kl, [p.grad.clone() for p in ref.params.values()])
    assert len(_row_chunks(5, 2)) == 3 and len(_row_chunks(5, 0)) == 1
    assert out[0][0] == pytest.approx(out[2][0], rel=1e-5) and out[0][1] == pytest.approx(out[2][1], rel=1e-5)
    assert out[0][1] > 0 and any(g.abs().sum() > 0 for g in out[0][2])
    for a, b in zip(out[0][2], out[2][2]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


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
    from nla_audit.vectors import read_vectors
    from tests.builders import text_corpus

    from nla_audit.training.datagen import DatagenConfig, run_datagen
    from nla_audit.training.sft import train_ar_sft, train_av_sft

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
    from nla_audit.vectors import read_vectors
    from tests.builders import text_corpus

    from nla_audit.training.datagen import DatagenConfig, run_datagen

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
