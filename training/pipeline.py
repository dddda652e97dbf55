"""The whole recipe in one resumable command: extract → split + datagen → AR SFT → AV SFT → GRPO.

Every stage is skipped when its output exists and resumed from its last checkpoint when it was interrupted,
so ``nla-audit train pipeline --run-dir D`` can be re-run after any stop (nohup it for long runs).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PipelineConfig:
    run_dir: str
    model: str = "default"
    corpus: str = "default"
    layer: int | None = None
    min_position: int = 10
    positions_per_doc: int = 10
    max_docs: int | None = None
    max_length: int = 1024  # tokens a document is cut to (chats at a turn boundary)
    control_share: float = 0.25  # share of a chat's positions taken at chat-template tokens
    # continue both SFT stages from an NLA (a folder holding av/ and ar/, or "default" for the shipped one)
    # instead of starting fresh: how the chat NLA was made from the fortunes-only one
    init_from: str | None = None
    teacher: str = "offline"
    pool_sft: bool = False  # both SFT stages train on the rows of both SFT splits (datagen --pool-sft)
    ar_steps: int = 400
    av_steps: int = 400
    rl_steps: int = 0
    rl_prompts_per_step: int = 4  # activations a GRPO step; 16 on a GPU (the shipped run)
    rl_group_size: int = 4  # samples per activation; 8 on a GPU
    rl_micro_batch: int = 0  # rollouts per policy forward/backward slice (0 = all at once)
    # A second GRPO stage from the first one's exports (run dir rl2): fresh optimizers and the KL re-anchored at
    # the first stage's AV, which lets it take larger steps than one long stage could. The shipped NLA is such a
    # continuation: 512 rollouts a step at twice the AV learning rate (BENCHMARKS.md, the gpu12 run).
    rl2_steps: int = 0
    rl2_prompts_per_step: int = 64  # group size and micro batch are the first stage's
    rl2_av_lr: float = 1e-4
    rl2_seed: int = 1
    ar_batch_size: int = 16
    ar_lora_rank: int = 16  # the AR's LoRA rank (alpha = 2 × rank); 64 reads teacher text better at equal steps
    av_batch_size: int = 8
    device: str = "auto"  # every stage: CUDA when available, else CPU

    def __post_init__(self) -> None:
        from nla_audit.errors import ConfigError

        if self.ar_lora_rank < 1:  # checked here, not hours later when the AR SFT stage starts
            raise ConfigError(f"ar_lora_rank = {self.ar_lora_rank}", expected="an integer >= 1 (16 is the shipped AR's)")
        if self.rl2_steps > 0 and self.rl_steps <= 0:
            raise ConfigError(f"rl2_steps = {self.rl2_steps} with rl_steps = {self.rl_steps}",
                              expected="rl_steps >= 1 (rl2 continues the first GRPO stage)", fix="set rl_steps, or rl2_steps=0")


def _say(msg: str) -> None:
    print(f"[pipeline] {msg}", file=sys.stderr, flush=True)


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> dict[str, Path]:
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.training.datagen import DatagenConfig, run_datagen
    from nla_audit.training.sft import SFTConfig, train_ar_sft, train_av_sft

    root = Path(cfg.run_dir)
    data = root / "data"
    base = data / "base.parquet"
    if not base.exists():
        _say(f"extract → {base}")
        extract_activations(ExtractConfig(out=str(base), model=cfg.model, corpus=cfg.corpus, layer=cfg.layer,
                                          positions_per_doc=cfg.positions_per_doc, min_position=cfg.min_position,
                                          max_docs=cfg.max_docs, batch_size=16, max_length=cfg.max_length,
                                          control_share=cfg.control_share, device=cfg.device), progress=progress)
    if not (data / "rl.parquet").exists():
        _say("split + datagen")
        run_datagen(DatagenConfig(data=str(base), out_dir=str(data), teacher=cfg.teacher,
                                  pool_sft=cfg.pool_sft))
    _check_pooling(data, cfg.pool_sft)
    out: dict[str, Path] = {}
    for stage, fn, steps, bs, name in (("ar_sft", train_ar_sft, cfg.ar_steps, cfg.ar_batch_size, "ar"),
                                       ("av_sft", train_av_sft, cfg.av_steps, cfg.av_batch_size, "av")):
        run_dir = root / stage
        if not _finished(run_dir, name, steps):
            resume = (run_dir / "checkpoint" / "state.pt").exists()
            _say(f"{stage}: {'resume' if resume else 'start'} → {steps} steps")
            ar_eval = data / "ar_eval.parquet"  # datagen's held-out teacher text: the AR SFT's held-out curve
            ar_only = dict(lora_rank=cfg.ar_lora_rank, lora_alpha=2.0 * cfg.ar_lora_rank,
                           eval_data=str(ar_eval) if ar_eval.exists() else None) if stage == "ar_sft" else {}
            init = str(init_dir(cfg.init_from) / name) if cfg.init_from else None
            if init:
                ar_only.pop("lora_rank", None), ar_only.pop("lora_alpha", None)  # a continued AR keeps its rank
            fn(SFTConfig(data=str(data / f"{stage}.parquet"), run_dir=str(run_dir), model=cfg.model, steps=steps,
                         batch_size=bs, device=cfg.device, init_from=init, **ar_only), resume=resume, progress=progress)
        out[name] = run_dir / name
    heldout = data / "base.test.parquet"  # the test split datagen writes: the held-out curve during RL
    stages: tuple[tuple[str, int, int, dict], ...] = (("rl", cfg.rl_steps, cfg.rl_prompts_per_step, {}),
              ("rl2", cfg.rl2_steps, cfg.rl2_prompts_per_step, {"av_lr": cfg.rl2_av_lr, "seed": cfg.rl2_seed}))
    for stage, steps, prompts, extra in stages:
        if steps <= 0:
            break  # rl2 continues rl (__post_init__ refuses rl2 without rl)
        from nla_audit.training.grpo import GRPOConfig, train_rl

        run_dir = root / stage
        start, out = out, {"av": run_dir / "av", "ar": run_dir / "ar"}  # each stage starts from the last one's exports
        if _finished(run_dir, "av", steps):
            continue  # finished: a re-run for a later stage must not reload or re-export it
        resume = (run_dir / "checkpoint" / "state.pt").exists()
        _say(f"{stage}: {'resume' if resume else 'start'} → {steps} steps")
        train_rl(GRPOConfig(data=str(data / "rl.parquet"), run_dir=str(run_dir), av=str(start["av"]),
                            ar=str(start["ar"]), model=cfg.model, steps=steps, prompts_per_step=prompts,
                            group_size=cfg.rl_group_size, micro_batch=cfg.rl_micro_batch, device=cfg.device,
                            eval_data=str(heldout) if heldout.exists() else None, **extra),
                 resume=resume, progress=progress)
    return out


def init_dir(spec: str) -> Path:
    """``default`` → the shipped NLA's folder; anything else is a folder holding ``av/`` and ``ar/``."""
    from nla_audit.errors import ConfigError

    if spec == "default":
        from nla_audit.nla import default_nla_paths

        return default_nla_paths()[0].parent
    root = Path(spec)
    if not ((root / "av" / "nla_meta.yaml").exists() and (root / "ar" / "nla_meta.yaml").exists()):
        raise ConfigError(f"init_from = {spec}", expected="a folder holding av/ and ar/ NLA checkpoints, or default")
    return root


def _check_pooling(data: Path, pool_sft: bool) -> None:
    """Existing SFT data made with the other ``pool_sft`` would be reused silently (datagen is skipped when its
    output exists), so the run would not be the recipe asked for: refuse instead."""
    from nla_audit.errors import ConfigError
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.training.datagen import made_pooled

    path = data / "av_sft.parquet"
    if not path.exists():
        return
    pooled = made_pooled(read_dataset_sidecar(path))
    if pooled != pool_sft:
        raise ConfigError(f"pool_sft = {pool_sft}, but {path} was made with pool_sft = {pooled}",
                          expected="the run dir's SFT data made with the same pool_sft",
                          fix="use a new --run-dir, or delete its data/*_sft.parquet and data/rl.parquet to redo datagen")


def _finished(run_dir: Path, export: str, steps: int) -> bool:
    """A stage is done when its export exists and its metrics reached ``steps``; a larger ``steps`` resumes it."""
    return (run_dir / export / "nla_meta.yaml").exists() and _last_step(run_dir) >= steps


def _last_step(run_dir: Path) -> int:
    import json

    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])["step"] if lines else 0
