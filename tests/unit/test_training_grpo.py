"""GRPO: advantages, rewards, surrogate and KL (pure), and tiny-model runs: resume, LR decay, merged sampler,
held-out eval, micro-batching."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nla_audit.errors import ConfigError
from nla_audit.training.grpo import GRPOConfig, clipped_surrogate, group_advantages, k3_kl, rollout_rewards
from tests.builders import tiny_rl_setup


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


def test_grpo_steps_run_and_resume(tiny_model_dir, tmp_path):
    from nla_audit.training.grpo import train_rl

    base, av, ar = tiny_rl_setup(tiny_model_dir, tmp_path)
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

    base, av, ar = tiny_rl_setup(tiny_model_dir, tmp_path)
    cfg = dict(data=str(base), av=str(av), ar=str(ar), model=str(tiny_model_dir), prompts_per_step=2, group_size=2,
               max_new_tokens=4, save_every=1, base_dtype="float32", warmup_steps=1, av_lr=1e-3, av_lr_floor=0.1)
    run = tmp_path / "rl"
    train_rl(GRPOConfig(run_dir=str(run), steps=3, **cfg), progress=False)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["av_lr"] for r in recs] == pytest.approx([1e-3, 1e-3, 0.55e-3])  # halfway down the cosine at step 3
    with pytest.raises(ConfigError, match="steps"):  # more steps would lift the decayed LR back up
        train_rl(GRPOConfig(run_dir=str(run), steps=5, **cfg), resume=True, progress=False)


def test_grpo_merged_sampler_samples_what_the_lora_policy_samples(tiny_model_dir, tmp_path):
    """Rollouts from the merged twin (the fast path) match rollouts from the LoRA policy itself (fp32)."""
    from nla_audit.training.grpo import train_rl

    base, av, ar = tiny_rl_setup(tiny_model_dir, tmp_path)
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
    from nla_audit.ar import ActivationReconstructor
    from nla_audit.av import ActivationVerbalizer
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
