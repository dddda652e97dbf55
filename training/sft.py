"""AR SFT and AV SFT.

* AR SFT: MSE between the AR's prediction and the gold activation, both normalised to ``mse_scale`` (√d),
  i.e. ``mse_nrm``; identity-initialised value head; backbone truncated after block K (§4.2).
* AV SFT: next-token cross-entropy on the response tokens only (``<explanation>…</explanation>`` and the
  chat template's end-of-turn token, so the AV learns to stop); the activation is injected by the same hook
  inference uses (§4.3). Every ``eval_every`` steps the loss on a fixed batch is measured twice, with the
  real and with shuffled activations: the gap is the reference's diagnostic that the AV reads the vector.

Departures from the reference: LoRA adapters (rank 16 by default) instead of full fine-tuning so the
shipped NLA fits in the repository; the frozen base in bf16 on CUDA and fp32 on the CPU (``base_dtype``),
optional bf16 autocast (``autocast``; slow on CPUs without native bf16); warm-up then constant LR; small batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nla_audit.injection import av_prompt_ids, injecting
from nla_audit.metrics import baselines, derangement, mse_nrm
from nla_audit.models import resolve_dtype
from nla_audit.progress import RateProgress
from nla_audit.roundtrip import score_texts
from nla_audit.sidecar import read_dataset_sidecar
from nla_audit.training.run import RunDir, cost, data_order, lr_at, with_device
from nla_audit.vectors import read_vectors


@dataclass(frozen=True)
class SFTConfig:
    data: str
    run_dir: str
    model: str = "default"
    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-4
    head_lr: float = 1e-3
    lora_rank: int = 16
    lora_alpha: float = 32.0
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 50
    eval_every: int = 50
    eval_rows: int = 32
    eval_data: str | None = None  # AR SFT only: datagen's ar_eval.parquet (held-out rows with teacher text)
    init_from: str | None = None  # continue an exported AR (its rank, head, baselines) or AV (its rank, injection scale)
    injection_scale: float | None = None
    max_length: int = 256
    # frozen base weights (LoRA factors and the AR head stay fp32): auto = bf16 on CUDA, fp32 on CPU, where bf16
    # without native instructions made a forward + backward ~30x slower (experiments/cpu_dtype.py)
    base_dtype: str = "auto"
    autocast: bool = False
    device: str = "auto"  # CUDA when available, else CPU; the run dir records the device actually used

    def __post_init__(self) -> None:
        from nla_audit.errors import ConfigError

        for k in ("steps", "batch_size", "lora_rank", "save_every", "eval_every", "max_length"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} = {getattr(self, k)}", expected="an integer >= 1")
        for k in ("lr", "head_lr"):
            if not (0 < getattr(self, k) < 1):
                raise ConfigError(f"{k} = {getattr(self, k)}", expected="0 < lr < 1")


def _autocast(cfg: SFTConfig):
    dev = "cuda" if cfg.device.startswith("cuda") else "cpu"
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=cfg.autocast)


def check_dataset(meta: dict, stage: str, model: str) -> None:
    """The dataset must come from this model (d_model, tokenizer) and be of the right stage."""
    from transformers import AutoConfig

    from nla_audit.errors import InputError
    from nla_audit.extract import tokenizer_fingerprint
    from nla_audit.models import load_tokenizer, resolve_model_path

    if meta.get("stage") != stage:
        raise InputError(f"dataset stage is {meta.get('stage')!r}", expected=stage, fix="pass the matching datagen output")
    path = resolve_model_path(model)
    d = int(AutoConfig.from_pretrained(path).hidden_size)
    ext = meta["extraction"]
    if int(ext["d_model"]) != d:
        raise InputError(f"dataset d_model {ext['d_model']} does not match the model's {d}",
                         fix="train on activations extracted from this model")
    fp = ext.get("tokenizer_fingerprint")
    if fp and fp != tokenizer_fingerprint(load_tokenizer(path)):
        raise InputError("dataset was extracted with a different tokenizer than the model's",
                         fix="train on activations extracted from this model")


# ============================================================================================ AR SFT
def train_ar_sft(cfg: SFTConfig, resume: bool = False, progress: bool = True) -> Path:
    import pyarrow.parquet as pq

    from nla_audit.training.config import config_defaults, to_dict
    from nla_audit.training.nla_models import build_ar, export_ar

    cfg = with_device(cfg)
    meta = read_dataset_sidecar(cfg.data)
    check_dataset(meta, "ar_sft", cfg.model)
    layer = int(meta["extraction"]["layer_index"])
    vecs, _ = read_vectors(cfg.data)
    texts = pq.read_table(cfg.data, columns=["explanation"]).column("explanation").to_pylist()
    gold = torch.from_numpy(vecs.copy())
    d = gold.shape[1]
    scale = math.sqrt(d)
    base, parents = _ar_start(cfg, gold, scale, layer)
    torch.manual_seed(cfg.seed)
    lm, inner, head, tok = build_ar(cfg.model, layer, cfg.lora_rank, cfg.lora_alpha, cfg.device,
                                    init_from=cfg.init_from, dtype=resolve_dtype(cfg.base_dtype, cfg.device))
    from nla_audit.training.nla_models import as_reconstructor

    ar = as_reconstructor(inner, head, tok, layer, d)
    heldout = _ar_eval_rows(cfg, layer, d) if cfg.eval_data else None
    lora = [p for p in lm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lora, "lr": cfg.lr}, {"params": head.parameters(), "lr": cfg.head_lr}],
                            betas=(0.9, 0.95), weight_decay=0.0)
    run = RunDir(cfg.run_dir, to_dict(cfg), resume, config_defaults(cfg))
    modules = {"lm": lm, "head": head}
    keep = lambda n: ".lora_" in n or n == "weight"  # noqa: E731  (LoRA factors + the head's weight)
    step = run.load(modules, {"opt": opt})["step"] if resume else 0
    t0 = time.perf_counter()
    with RateProgress("ar-sft", total=cfg.steps, enabled=progress, unit="steps") as bar:
        bar.advance(step)
        while step < cfg.steps:
            idx = data_order(len(texts), cfg.seed, step, cfg.batch_size)
            for i, g in enumerate(opt.param_groups):
                g["lr"] = lr_at(step, cfg.lr if i == 0 else cfg.head_lr, cfg.warmup_steps)
            ids, mask = ar.encode([texts[i] for i in idx], max_length=cfg.max_length)
            with _autocast(cfg):
                pred = ar(ids, mask)
            loss = mse_nrm(pred, gold[idx].to(pred.device), scale).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lora + list(head.parameters()), cfg.grad_clip)
            opt.step()
            step += 1
            rec = {"step": step, "loss": loss.item(), "fve_nrm": 1 - loss.item() / base["baseline_rawvar"],
                   "lr": opt.param_groups[0]["lr"], "elapsed_s": time.perf_counter() - t0}
            if heldout is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                rec["eval_fve_nrm"] = ar_heldout_fve(ar, *heldout, base["baseline_rawvar"], cfg)
            run.log(rec)
            bar.advance(1, int(mask.sum()), loss=rec["loss"], fve=rec["fve_nrm"])
            if step % cfg.save_every == 0 or step == cfg.steps:
                run.save(step, modules, {"opt": opt}, keep)
                export_ar(lm, head, Path(cfg.run_dir) / "ar", cfg.model, layer, None, base, "sl", [cfg.data, *parents],
                          {"loss_type": "sft_mse_nrm", "step": step, "lr": cfg.lr, "batch_size": cfg.batch_size,
                           **cost(run, cfg.device, _parent_sidecars(cfg, "ar"))})
                run.plot()
    return Path(cfg.run_dir) / "ar"


def _ar_start(cfg: SFTConfig, gold: torch.Tensor, scale: float, layer: int) -> tuple[dict, list[str]]:
    """(fve baselines, parent training data). A continued AR keeps its parent's baselines, so its fve_nrm stays
    comparable with the parent's, and lists what the parent trained on, so held-out checks see all of it."""
    if not cfg.init_from:
        return baselines(gold, scale), []
    from nla_audit.errors import InputError
    from nla_audit.sidecar import read_model_sidecar

    meta = read_model_sidecar(cfg.init_from, "ar")
    if meta.require_layer() != layer or meta.d_model != gold.shape[1]:
        raise InputError(f"init_from {cfg.init_from} is layer {meta.layer_index}, d_model {meta.d_model}",
                         expected=f"layer {layer}, d_model {gold.shape[1]} (the data's site)",
                         fix="continue an AR trained at this data's layer")
    from nla_audit.training.nla_models import sidecar_baselines

    return sidecar_baselines(meta) or baselines(gold, scale), list(meta.trained_on)


def _parent_sidecars(cfg: SFTConfig, role: str) -> tuple:
    """The checkpoint a continued stage started from, so its training cost joins the new sidecar's lineage (a
    continued NLA's total wall time is its parent's plus its own; unknown if the parent recorded none)."""
    from nla_audit.sidecar import read_model_sidecar

    return (read_model_sidecar(cfg.init_from, role),) if cfg.init_from else ()


def _ar_eval_rows(cfg: SFTConfig, layer: int, d: int) -> tuple[list[str], torch.Tensor]:
    """The first ``eval_rows`` (teacher text, activation) pairs of an ``ar_eval`` parquet at the AR's site."""
    assert cfg.eval_data is not None  # called only when the config names held-out data
    import pyarrow.parquet as pq

    from nla_audit.errors import InputError

    meta = read_dataset_sidecar(cfg.eval_data)
    ext = meta["extraction"]
    if meta.get("stage") != "ar_eval" or int(ext["layer_index"]) != layer or int(ext["d_model"]) != d:
        raise InputError(f"eval_data {cfg.eval_data} is stage {meta.get('stage')!r}, layer {ext['layer_index']}, "
                         f"d_model {ext['d_model']}", expected=f"stage 'ar_eval', layer {layer}, d_model {d}",
                         fix="pass the ar_eval.parquet that datagen wrote beside this ar_sft.parquet")
    vecs, _ = read_vectors(cfg.eval_data)
    texts = pq.read_table(cfg.eval_data, columns=["explanation"]).column("explanation").to_pylist()
    n = min(cfg.eval_rows, len(texts))
    return texts[:n], torch.from_numpy(vecs[:n].copy())


def ar_heldout_fve(ar: Any, texts: list[str], gold: torch.Tensor, b_rv: float, cfg: SFTConfig) -> float:
    """Mean fve_nrm of the live AR on held-out teacher text: the reference an AV's text is measured against.
    Scored by ``roundtrip.score_texts`` (``reconstruct``, no truncation), as ``benchmarks/fve.py`` and GRPO's
    held-out curve score."""
    return float(score_texts(ar, texts, gold, b_rv, cfg.batch_size).require_fve().mean())


# ============================================================================================ AV SFT
def av_batch(tok: Any, prompt: list[int], responses: list[str], max_length: int, pad_id: int):
    """Right-padded prompt+response ids, and a label mask that is 1 on response tokens (incl. end of turn)."""
    rows, masks = [], []
    for r in responses:
        resp = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + resp)[:max_length]
        rows.append(ids)
        masks.append([0] * len(prompt) + [1] * (len(ids) - len(prompt)))
    from nla_audit.padding import pad, pad_batch

    ids, attn = pad_batch(rows, pad_id, multiple=16)  # multiple of 16: fewer shapes to compile kernels for
    return ids, attn, pad(masks, 0, width=ids.shape[1])


def response_nll(lm: Any, ids: torch.Tensor, attn: torch.Tensor, lab: torch.Tensor, per_sample: bool = False):
    """Mean token NLL over label positions; logits only where needed (the 49k-vocab head is the hot spot)."""
    dev = lm.lm_head.weight.device
    ids, attn, lab = ids.to(dev), attn.to(dev), lab.to(dev)
    hidden = lm.model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
    tgt_mask = lab[:, 1:].bool()
    h = hidden[:, :-1][tgt_mask]
    logits = lm.lm_head(h).float()
    nll = F.cross_entropy(logits, ids[:, 1:][tgt_mask], reduction="none")
    if not per_sample:
        return nll.mean()
    counts = tgt_mask.sum(1)
    return torch.stack([c.mean() for c in torch.split(nll, counts.tolist())])


def train_av_sft(cfg: SFTConfig, resume: bool = False, progress: bool = True) -> Path:
    import pyarrow.parquet as pq

    from nla_audit.sidecar import TokenMeta
    from nla_audit.training.config import config_defaults, to_dict
    from nla_audit.training.nla_models import build_av, export_av

    cfg = with_device(cfg)
    if cfg.eval_data:
        from nla_audit.errors import ConfigError

        raise ConfigError(f"eval_data = {cfg.eval_data}", expected="unset for AV SFT (it logs the real-vs-shuffled "
                          "loss gap on training rows; eval_data is the AR SFT's held-out curve)")
    meta = read_dataset_sidecar(cfg.data)
    check_dataset(meta, "av_sft", cfg.model)
    tokens = TokenMeta.from_dict(meta["tokens"], cfg.data)
    vecs, _ = read_vectors(cfg.data)
    responses = pq.read_table(cfg.data, columns=["response"]).column("response").to_pylist()
    acts = torch.from_numpy(vecs.copy())
    scale, parent_data = _av_start(cfg, acts)
    torch.manual_seed(cfg.seed)
    lm, tok = build_av(cfg.model, cfg.lora_rank, cfg.lora_alpha, cfg.device, init_from=cfg.init_from,
                       dtype=resolve_dtype(cfg.base_dtype, cfg.device))
    prompt = av_prompt_ids(tok, meta["prompt_templates"]["actor"], tokens.injection_char)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    params = [p for p in lm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    run = RunDir(cfg.run_dir, to_dict(cfg), resume, config_defaults(cfg))
    keep = lambda n: ".lora_" in n  # noqa: E731
    step = run.load({"lm": lm}, {"opt": opt})["step"] if resume else 0
    ev = np.arange(min(cfg.eval_rows, len(responses)))
    # the one floor: each eval row's response paired with another eval row's activation (a derangement)
    ev_shuf = ev[derangement(len(ev), cfg.seed + 1).numpy()] if len(ev) > 1 else ev
    t0 = time.perf_counter()
    with RateProgress("av-sft", total=cfg.steps, enabled=progress, unit="steps") as bar:
        bar.advance(step)
        while step < cfg.steps:
            idx = data_order(len(responses), cfg.seed, step, cfg.batch_size)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps)
            ids, attn, lab = av_batch(tok, prompt, [responses[i] for i in idx], cfg.max_length, pad)
            lm.train()
            with _autocast(cfg), injecting(lm, tokens, acts[idx], scale):
                loss = response_nll(lm, ids, attn, lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            rec = {"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"], "elapsed_s": time.perf_counter() - t0}
            if step % cfg.eval_every == 0 or step == cfg.steps:
                rec.update(shuffled_gap(lm, tok, tokens, prompt, responses, acts, ev, ev_shuf, scale, cfg, pad))
            run.log(rec)
            bar.advance(1, int(attn.sum()), loss=rec["loss"])
            if step % cfg.save_every == 0 or step == cfg.steps:
                run.save(step, {"lm": lm}, {"opt": opt}, keep)
                export_av(lm, Path(cfg.run_dir) / "av", cfg.model, acts.shape[1], tokens, scale, "sl",
                          [*parent_data, cfg.data],
                          {"loss_type": "sft_loss", "step": step, "lr": cfg.lr, "batch_size": cfg.batch_size,
                           "init_from": cfg.init_from, **cost(run, cfg.device, _parent_sidecars(cfg, "av"))})
                run.plot(("loss", "eval_loss_real", "eval_gap"))
    return Path(cfg.run_dir) / "av"


def _av_start(cfg: SFTConfig, acts: torch.Tensor) -> tuple[float, list[str]]:
    """(injection scale, parent training data). A continued AV keeps its parent's scale (the vector size it
    learned to read) and lists what the parent trained on, so held-out checks see all of it."""
    from nla_audit.training.nla_models import round_scale

    if not cfg.init_from:
        return cfg.injection_scale or round_scale(float(acts.norm(dim=1).mean())), []
    from nla_audit.errors import InputError
    from nla_audit.sidecar import read_model_sidecar

    meta = read_model_sidecar(cfg.init_from, "av")
    if meta.d_model != acts.shape[1]:
        raise InputError(f"init_from {cfg.init_from} reads d_model {meta.d_model} vectors",
                         expected=f"d_model {acts.shape[1]} (the data's)", fix="continue an AV of this data's model")
    return cfg.injection_scale or meta.require_injection_scale(), list(meta.trained_on)


@torch.no_grad()
def shuffled_gap(lm, tok, tokens, prompt, responses, acts, ev, ev_shuf, scale, cfg, pad) -> dict:
    """Loss on a fixed batch with its real activations vs with other rows' activations (higher = reads it)."""
    lm.eval()
    ids, attn, lab = av_batch(tok, prompt, [responses[i] for i in ev], cfg.max_length, pad)
    out = {}
    for name, rows in (("real", ev), ("shuffled", ev_shuf)):
        with _autocast(cfg), injecting(lm, tokens, acts[rows], scale):
            out[f"eval_loss_{name}"] = response_nll(lm, ids, attn, lab).item()
    out["eval_gap"] = out["eval_loss_shuffled"] - out["eval_loss_real"]
    return out
