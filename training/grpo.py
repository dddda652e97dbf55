"""GRPO for the AV with a live AR (as in the reference code), in one process.

Each step: take ``prompts_per_step`` activations; the AV samples ``group_size`` explanations for each at
temperature 1 with the vector injected; the *current* AR scores every completed sample (reward
``−mse_nrm``); samples without ``<explanation>`` tags, cut by the length cap, or too long for the AR get the
fixed failure reward −2.0; advantages are normalised within each group; the AV takes one PPO-clipped
policy-gradient step with a KL penalty to the SFT AV; then the AR takes one supervised step on the AV's own
completed explanations, so rewards always come from a live AR that the AV cannot exploit by standing still.

Departures from the reference, on purpose:
* one process, HF ``generate`` for rollouts, no Ray/Miles/SGLang; with ``merged_sampler`` (default) rollouts
  and the held-out eval sample from a frozen twin of the AV whose weights are re-merged (base + LoRA, fp32 then
  cast) before each use: the reference's separate inference engine with per-step weight sync, in one process.
  In bf16 the twin's log-probs differ from the policy's by rounding, as an engine's do;
* LoRA adapters on both AV and AR (the reference fine-tunes all weights);
* one optimisation pass per rollout batch, so the importance ratio is 1 at the update (the clipped
  surrogate is kept in the code path and is exact for ``ppo_epochs > 1``);
* KL uses the k3 estimator ``exp(r) − r − 1`` with ``r = log π_ref − log π`` (non-negative, low variance)
  instead of Miles' k1; the reference policy is the SFT AV, evaluated by swapping its LoRA factors in;
* small groups and batches (CPU); LR warm-up then constant, or (``av_lr_floor`` < 1, off by default) a cosine
  decay of the AV's LR over the run;
* with ``ppo_epochs = 1`` the "old" log-probs are the detached current ones (ratio 1), saving a forward pass.

Held-out curve (not in the reference's loop): with ``eval_data`` (a test-split activation parquet, e.g. the
``base.test.parquet`` that datagen writes), every ``eval_every`` steps the AV explains ``eval_rows`` fixed
held-out activations at ``eval_temperature`` with a fixed seed, the live AR scores every row (failed parses
included, as ``benchmarks/fve.py`` does), and the same rows read another row's activation (the derangement of
``nla_audit.roundtrip``) for the floor.
The per-step ``fve_nrm`` is on that step's training rollouts (``prompts_per_step`` activations: noisy);
``eval_fve_nrm`` is the number to watch. The eval draws from a forked RNG, so it never changes the training trajectory.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nla_audit.av import ActivationVerbalizer, parse_explanation
from nla_audit.injection import av_prompt_ids, injecting
from nla_audit.lora import merged_copy, sync_merged
from nla_audit.metrics import mse_nrm
from nla_audit.models import resolve_dtype
from nla_audit.progress import RateProgress
from nla_audit.roundtrip import floor_order, penalise_failed, round_trip, score_reconstructions
from nla_audit.sidecar import AV_TEMPLATE, read_dataset_sidecar, read_model_sidecar
from nla_audit.training.run import RESUMABLE_KEYS, RunDir, cost, data_order, lr_at, with_device
from nla_audit.vectors import read_vectors


@dataclass(frozen=True)
class GRPOConfig:
    data: str
    run_dir: str
    av: str
    ar: str
    model: str = "default"
    steps: int = 100
    prompts_per_step: int = 4
    group_size: int = 4
    max_new_tokens: int = 96
    temperature: float = 1.0
    av_lr: float = 5e-5
    # 1 = the AV's LR stays constant after warm-up (the reference); < 1 = cosine from av_lr down to av_lr_floor × av_lr
    # at `steps` (lr_at: a late decay lowers the level a constant LR's update noise levels off at)
    av_lr_floor: float = 1.0
    ar_lr: float = 1e-4
    head_lr: float = 3e-4
    kl_coef: float = 0.01
    clip_eps: float = 0.2
    ppo_epochs: int = 1
    warmup_steps: int = 5
    grad_clip: float = 1.0
    ar_max_length: int = 300
    seed: int = 0
    save_every: int = 10
    eval_every: int = 50
    eval_data: str | None = None
    eval_rows: int = 32
    eval_temperature: float = 0.7
    merged_sampler: bool = True  # sample from a merged twin of the AV (fewer kernel launches per decoded token)
    rollout_cache: str | None = None  # HF cache_implementation for rollouts ("static": compiled decode on CUDA)
    micro_batch: int = 0  # rows per policy forward/backward slice (0 = all rollouts at once); same gradient
    base_dtype: str = "auto"  # bf16 on CUDA, fp32 on CPU (bf16 there can be ~30x slower: experiments/cpu_dtype.py)
    device: str = "auto"  # CUDA when available, else CPU; the run dir records the device actually used

    def __post_init__(self) -> None:
        from nla_audit.errors import ConfigError

        if self.group_size < 2:
            raise ConfigError(f"group_size = {self.group_size}", expected=">= 2 (advantages are relative to the group)")
        for k in ("steps", "prompts_per_step", "max_new_tokens", "ppo_epochs", "save_every", "eval_every", "eval_rows"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} = {getattr(self, k)}", expected="an integer >= 1")
        if self.micro_batch < 0:
            raise ConfigError(f"micro_batch = {self.micro_batch}", expected=">= 0 (0 = all rollouts in one pass)")
        if not 0.0 <= self.av_lr_floor <= 1.0:
            raise ConfigError(f"av_lr_floor = {self.av_lr_floor}", expected="0 <= av_lr_floor <= 1 (1 = constant LR)")
        if self.temperature <= 0:
            raise ConfigError(f"temperature = {self.temperature}", expected="> 0 (GRPO needs sampled groups)")
        if self.eval_temperature < 0:
            raise ConfigError(f"eval_temperature = {self.eval_temperature}", expected=">= 0 (0 = greedy)")


# ------------------------------------------------------------------------------------------ pure parts
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """(r − mean_group) / (std_group + eps), for rewards laid out group after group."""
    r = rewards.view(-1, group_size)
    adv = (r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True, unbiased=False) + eps)
    return adv.reshape(-1)


def rollout_rewards(texts: list[str], ok: list[bool], truncated: list[bool], too_long: list[bool],
                    mse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward −mse_nrm for completed samples, FAILED_REWARD (−2, an orthogonal guess) otherwise; also the
    completed mask. Unlike every report's round trip, which scores an untagged text as it is, the reward
    penalises it (``roundtrip.penalise_failed``), so the policy gains nothing by dropping its tags."""
    completed = torch.tensor([o and not t and not L for o, t, L in zip(ok, truncated, too_long)], device=mse.device)
    return -penalise_failed(mse, ~completed), completed


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    ratio = torch.exp(logp - old_logp)
    return -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r = ref_logp - logp
    return torch.exp(r) - r - 1


# ------------------------------------------------------------------------------------------ model parts
def token_logprobs(lm: Any, ids: torch.Tensor, attn: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
    """Log-prob of each label token; [N_label_tokens] in row-major order."""
    hidden = lm.model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
    m = lab[:, 1:].bool()
    logits = lm.lm_head(hidden[:, :-1][m]).float()
    return -F.cross_entropy(logits, ids[:, 1:][m], reduction="none")


def per_sample_mean(values: torch.Tensor, counts: list[int]) -> torch.Tensor:
    return torch.stack([c.mean() for c in torch.split(values, counts)])


class SwappedLoRA:
    """Temporarily put the reference (SFT) LoRA factors into the live model, to score π_ref cheaply."""

    def __init__(self, lm: Any) -> None:
        self.params = {n: p for n, p in lm.named_parameters() if ".lora_" in n}
        self.ref = {n: p.detach().clone() for n, p in self.params.items()}

    def __enter__(self):
        self.live = {n: p.data for n, p in self.params.items()}
        for n, p in self.params.items():
            p.data = self.ref[n]
        return self

    def __exit__(self, *exc):
        for n, p in self.params.items():
            p.data = self.live[n]


def _row_chunks(n: int, micro_batch: int) -> list[slice]:
    """Row slices of at most ``micro_batch`` rows (0 = one slice): the policy pass's peak memory is one slice's."""
    size = micro_batch or n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def _frozen_logprobs(lm: Any, tokens: Any, v: torch.Tensor, scale: float, ids: torch.Tensor, attn: torch.Tensor,
                     lab: torch.Tensor, swap: SwappedLoRA | None = None) -> torch.Tensor:
    """Label-token log-probs without a graph: the reference policy (``swap`` = its LoRA) or the pre-update one."""
    with injecting(lm, tokens, v, scale), (swap or contextlib.nullcontext()):
        return token_logprobs(lm, ids, attn, lab)


def policy_update(lm: Any, tokens: Any, v: torch.Tensor, scale: float, ids: torch.Tensor, attn: torch.Tensor,
                  lab: torch.Tensor, adv: torch.Tensor, ref_logp: list[torch.Tensor], rows: list[slice],
                  cfg: GRPOConfig, old_logp: list[torch.Tensor] | None = None) -> tuple[float, float]:
    """Zero the AV's grads and accumulate ∇(policy loss + kl_coef·KL) slice by slice; returns (loss, kl).

    The loss is the mean over samples of each sample's token-mean, so each slice adds its samples' sum over the
    total count: the gradient equals the one-pass gradient, whatever the slicing (a GPU fits a larger group).
    Without ``old_logp`` (``ppo_epochs = 1``) the "old" log-probs are the detached current ones (ratio 1).
    """
    n = len(v)
    lm.zero_grad(set_to_none=True)
    loss_sum = kl_sum = 0.0
    for i, (c, ref_c) in enumerate(zip(rows, ref_logp)):
        counts = lab[c, 1:].sum(1).tolist()
        adv_tok = torch.repeat_interleave(adv[c], torch.tensor(counts, device=adv.device))
        with injecting(lm, tokens, v[c], scale):
            logp = token_logprobs(lm, ids[c], attn[c], lab[c])
        old = logp.detach() if old_logp is None else old_logp[i]
        pg = per_sample_mean(clipped_surrogate(logp, old, adv_tok, cfg.clip_eps), counts).sum()
        kl = per_sample_mean(k3_kl(logp, ref_c), counts).sum()
        ((pg + cfg.kl_coef * kl) / n).backward()
        loss_sum += (pg + cfg.kl_coef * kl).item()
        kl_sum += kl.item()
    return loss_sum / n, kl_sum / n


def _sequences(tok: Any, prompt: list[int], responses: list[list[int]], pad: int):
    from nla_audit.padding import pad as pad_rows
    from nla_audit.padding import pad_batch

    rows = [prompt + r for r in responses]
    ids, attn = pad_batch(rows, pad, multiple=16)
    lab = pad_rows([[0] * len(prompt) + [1] * len(r) for r in responses], 0, width=ids.shape[1])
    return ids, attn, lab


def train_rl(cfg: GRPOConfig, resume: bool = False, progress: bool = True) -> Path:
    from nla_audit.training.config import config_defaults, to_dict
    from nla_audit.training.nla_models import as_reconstructor, build_ar, build_av

    cfg = with_device(cfg)
    dev = torch.device(cfg.device)
    meta = read_dataset_sidecar(cfg.data)
    av_meta, ar_meta = read_model_sidecar(cfg.av, "av"), read_model_sidecar(cfg.ar, "ar")
    layer = ar_meta.require_layer()
    if int(meta["extraction"]["layer_index"]) != layer or int(meta["extraction"]["d_model"]) != ar_meta.d_model:
        from nla_audit.errors import InputError

        raise InputError("RL data and the AR disagree on layer/d_model", fix="use data extracted at the NLA's layer")
    vecs, _ = read_vectors(cfg.data)
    acts = torch.from_numpy(vecs.copy())
    torch.manual_seed(cfg.seed)
    dt = resolve_dtype(cfg.base_dtype, cfg.device)
    lm, tok = build_av(cfg.model, 0, 0, cfg.device, init_from=cfg.av, dtype=dt)
    ar_lm, inner, head, ar_tok = build_ar(cfg.model, layer, 0, 0, cfg.device, init_from=cfg.ar, dtype=dt)
    ar = as_reconstructor(inner, head, ar_tok, layer, ar_meta.d_model)
    tokens, scale = av_meta.require_tokens(), av_meta.require_injection_scale()
    prompt = av_prompt_ids(tok, av_meta.av_template or AV_TEMPLATE, tokens.injection_char)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ref = SwappedLoRA(lm)
    av_params = list(ref.params.values())
    ar_lora = [p for n, p in ar_lm.named_parameters() if ".lora_" in n]
    av_opt = torch.optim.AdamW(av_params, lr=cfg.av_lr, betas=(0.9, 0.95), weight_decay=0.0)
    ar_opt = torch.optim.AdamW([{"params": ar_lora, "lr": cfg.ar_lr}, {"params": head.parameters(), "lr": cfg.head_lr}],
                               betas=(0.9, 0.95), weight_decay=0.0)
    # a decaying LR runs over `steps`: a resume with more steps would lift the LR back up, so steps is fixed then
    resumable = RESUMABLE_KEYS - {"steps"} if cfg.av_lr_floor < 1 else RESUMABLE_KEYS
    run = RunDir(cfg.run_dir, to_dict(cfg), resume, config_defaults(cfg), resumable)
    modules, opts = {"av": lm, "ar": ar_lm, "head": head}, {"av": av_opt, "ar": ar_opt}
    keep = lambda n: ".lora_" in n or n == "weight"
    step = 0
    if resume:
        state = run.load(modules, opts)
        step = state["step"]
        for n, p in ref.params.items():
            ref.ref[n] = state["extra"]["ref"][n].to(p.device)
    twin = merged_copy(lm) if cfg.merged_sampler else None
    sampler = (lambda: sync_merged(lm, twin)) if twin is not None else (lambda: lm)
    b_rv = ar_meta.fve_baseline() or 1.0
    heldout = _heldout_vectors(cfg, layer, ar_meta.d_model) if cfg.eval_data else None
    t0 = time.perf_counter()
    with RateProgress("grpo", total=cfg.steps, enabled=progress, unit="steps") as bar:
        bar.advance(step)
        while step < cfg.steps:
            idx = data_order(len(acts), cfg.seed, step, cfg.prompts_per_step)
            v = acts[idx].repeat_interleave(cfg.group_size, dim=0).to(dev)
            for g in av_opt.param_groups:
                g["lr"] = lr_at(step, cfg.av_lr, cfg.warmup_steps, cfg.steps, cfg.av_lr_floor)
            # ---- rollouts (sampled, vector injected)
            t_gen = _clock(dev)
            lm.eval()
            responses, texts, ok, trunc = _rollouts(sampler(), tok, prompt, tokens, v, scale, cfg.temperature,
                                                    cfg.max_new_tokens, pad, **_cache_kw(cfg))
            ar_ids, ar_mask = (t.to(dev) for t in ar.encode(texts))
            too_long = (ar_mask.sum(1) > cfg.ar_max_length).tolist()
            with torch.no_grad():
                mse = score_reconstructions(ar(ar_ids, ar_mask), v, ar.meta.require_mse_scale()).mse
            rewards, completed = rollout_rewards(texts, ok, trunc, too_long, mse)
            adv = group_advantages(rewards, cfg.group_size)
            # ---- policy update
            t_pol = _clock(dev)
            ids, attn, lab = (t.to(dev) for t in _sequences(tok, prompt, responses, pad))
            rows = _row_chunks(len(v), cfg.micro_batch)
            ref_logp = [_frozen_logprobs(lm, tokens, v[c], scale, ids[c], attn[c], lab[c], ref) for c in rows]
            old_logp = [_frozen_logprobs(lm, tokens, v[c], scale, ids[c], attn[c], lab[c]) for c in rows] \
                if cfg.ppo_epochs > 1 else None
            lm.train()
            for _ in range(cfg.ppo_epochs):
                loss, kl = policy_update(lm, tokens, v, scale, ids, attn, lab, adv, ref_logp, rows, cfg, old_logp)
                torch.nn.utils.clip_grad_norm_(av_params, cfg.grad_clip)
                av_opt.step()
            # ---- live AR update on the AV's own completed explanations
            t_ar = _clock(dev)
            ar_loss = float("nan")
            if completed.any():
                keep_rows = completed.nonzero()[:, 0]
                pred = ar(ar_ids[keep_rows], ar_mask[keep_rows])
                ar_l = mse_nrm(pred, v[keep_rows], ar.meta.mse_scale).mean()
                ar_opt.zero_grad(set_to_none=True)
                ar_l.backward()
                torch.nn.utils.clip_grad_norm_(ar_lora + list(head.parameters()), cfg.grad_clip)
                ar_opt.step()
                ar_loss = ar_l.item()
            t_end = _clock(dev)
            step += 1
            comp_mse = mse[completed]
            rec = {"step": step, "reward": rewards.mean().item(), "loss": loss, "kl": kl,
                   "failed_rate": 1 - completed.float().mean().item(), "ar_loss": ar_loss,
                   "fve_nrm": (1 - comp_mse.mean().item() / b_rv) if len(comp_mse) else None,
                   "mean_len": sum(len(r) for r in responses) / len(responses), "elapsed_s": time.perf_counter() - t0,
                   "av_lr": av_opt.param_groups[0]["lr"], "rollout_s": t_pol - t_gen, "policy_s": t_ar - t_pol, "ar_s": t_end - t_ar}
            if heldout is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                lm.eval()
                rec.update(heldout_eval(ActivationVerbalizer(sampler(), tok, av_meta), ar, heldout, b_rv, cfg))
            run.log(rec)
            bar.advance(1, reward=rec["reward"], fve=rec["fve_nrm"] if rec["fve_nrm"] is not None else math.nan)
            if step % cfg.save_every == 0 or step == cfg.steps:
                run.save(step, modules, opts, keep, extra={"ref": {n: t.cpu() for n, t in ref.ref.items()}})
                _export(cfg, lm, ar_lm, head, av_meta, ar_meta, layer, step, cost(run, cfg.device, (av_meta, ar_meta)))
                run.plot(("reward", "fve_nrm", "eval_fve_nrm", "eval_fve_nrm_shuffled", "kl", "failed_rate"))
    return Path(cfg.run_dir) / "av"


def _cache_kw(cfg: GRPOConfig) -> dict[str, str]:
    return {"cache_implementation": cfg.rollout_cache} if cfg.rollout_cache else {}


def _clock(dev: torch.device) -> float:
    """Wall time after the device's queued work is done, so per-phase timings on CUDA are not just launch times."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def _rollouts(lm: Any, tok: Any, prompt: list[int], tokens: Any, v: torch.Tensor, scale: float, temperature: float,
              max_new_tokens: int, pad: int, **generate_kw: Any) -> tuple[list[list[int]], list[str], list[bool], list[bool]]:
    """One sampled explanation per row of ``v``: response ids (through EOS), parsed text, tag ok, truncated.

    ``generate_kw`` goes to HF ``generate`` as is (``benchmarks/rollout_speed.py`` tries cache settings with it).
    """
    ids0 = torch.tensor([prompt] * len(v), device=v.device)
    with torch.no_grad(), injecting(lm, tokens, v, scale):
        gen = lm.generate(input_ids=ids0, attention_mask=torch.ones_like(ids0), do_sample=True, temperature=temperature,
                          top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, pad_token_id=pad,
                          eos_token_id=tok.eos_token_id, **generate_kw)
    responses, texts, ok, trunc = [], [], [], []
    for row in gen[:, len(prompt):].tolist():
        cut = tok.eos_token_id in row
        row = row[: row.index(tok.eos_token_id) + 1] if cut else row
        t, o = parse_explanation(tok.decode(row, skip_special_tokens=True))
        responses.append(row)
        texts.append(t)
        ok.append(o)
        trunc.append(not cut)
    return responses, texts, ok, trunc


def _heldout_vectors(cfg: GRPOConfig, layer: int, d_model: int) -> torch.Tensor:
    """``eval_rows`` fixed rows (seeded choice) of the held-out parquet, checked against the NLA's site."""
    assert cfg.eval_data is not None  # called only when the config names held-out data
    from nla_audit.errors import InputError

    meta = read_dataset_sidecar(cfg.eval_data)
    ext = meta["extraction"]
    if int(ext["layer_index"]) != layer or int(ext["d_model"]) != d_model:
        raise InputError(f"eval_data {cfg.eval_data} is layer {ext['layer_index']}, d_model {ext['d_model']}",
                         expected=f"layer {layer}, d_model {d_model} (the NLA's site)",
                         fix="pass the test split of the data the RL parquet came from (datagen writes *.test.parquet)")
    vecs, _ = read_vectors(cfg.eval_data)
    rows = np.random.default_rng(cfg.seed).permutation(len(vecs))[: cfg.eval_rows]
    floor_order(len(rows))  # the floor needs 2 rows: refused now, not at the first eval
    return torch.from_numpy(vecs[np.sort(rows)].copy())


@torch.no_grad()
def heldout_eval(av: Any, ar: Any, gold: torch.Tensor, b_rv: float, cfg: GRPOConfig) -> dict[str, float]:
    """Held-out fve_nrm of the live AV + AR, and its floor (each row explained from another row's activation, the
    derangement with seed 0), both by ``roundtrip.round_trip``; sampling is seeded by ``cfg.seed``."""
    out: dict[str, float] = {}
    for key, shuffled in (("eval_fve_nrm", False), ("eval_fve_nrm_shuffled", True)):
        rt = round_trip(av, ar, gold, b_rv, shuffled=shuffled, seed=0, sample_seed=cfg.seed,
                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.eval_temperature)
        out[key] = float(rt.require_fve().mean())
        if not shuffled:
            out["eval_failed_rate"] = rt.failed_rate
    return out


def _export(cfg, lm, ar_lm, head, av_meta, ar_meta, layer, step, spent: dict) -> None:
    from nla_audit.training.nla_models import export_ar, export_av, sidecar_baselines

    training = {"loss_type": "policy_loss", "step": step, "lr": cfg.av_lr, "lr_floor": cfg.av_lr_floor,
                "group_size": cfg.group_size, **spent}
    # trained_on lists the RL data and what the parents trained on, so held-out checks see every stage's data
    export_av(lm, Path(cfg.run_dir) / "av", cfg.model, av_meta.d_model, av_meta.tokens, av_meta.injection_scale, "rl",
              list(dict.fromkeys([cfg.data, *av_meta.trained_on])), training)
    export_ar(ar_lm, head, Path(cfg.run_dir) / "ar", cfg.model, layer, ar_meta.tokens, sidecar_baselines(ar_meta), "sl",
              list(dict.fromkeys([cfg.data, *ar_meta.trained_on])),
              {"loss_type": "custom_loss", "step": step, "lr": cfg.ar_lr, "co_trained_with": "rl", **spent})
