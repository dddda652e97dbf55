"""Run directories: resolved config, atomic checkpoints, exact resume, metrics JSONL and a PNG of the curves.

Resume contract: a checkpoint holds the trainable weights, optimizer state, step and RNG states; the data
order is a pure function of (seed, step), so a run killed at any point and resumed with ``--resume``
continues from the last checkpoint with no lost or repeated steps, and the metrics file is cut back to it.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nla_audit.atomic import atomic_dir, atomic_write_text
from nla_audit.errors import ConfigError

CKPT = "checkpoint"
# may change on resume: the length of the run, and what is logged (evals draw from a forked RNG, so they never
# change the trajectory)
# device, base_dtype and micro_batch may change on resume: a CPU run can continue on a GPU machine and back (state
# is saved on the CPU, trainable weights in fp32), the frozen base's dtype follows the device ("auto"), and
# micro-batching changes peak memory, not the gradient
RESUMABLE_KEYS = frozenset({"steps", "save_every", "eval_every", "eval_data", "eval_rows", "eval_temperature", "device",
                            "base_dtype", "micro_batch"})


class RunDir:
    def __init__(self, path: str | Path, config: dict, resume: bool, defaults: dict | None = None,
                 resumable: frozenset[str] = RESUMABLE_KEYS) -> None:
        """``defaults``: config keys' default values. A key that a run saved before the key existed counts as its
        default on resume, so adding a config key (with a default that keeps the old behaviour) does not lock
        runs in progress out of ``--resume``. ``resumable``: keys that may differ on resume."""
        self.path = Path(path)
        cfg_path = self.path / "resolved_config.yaml"
        if resume:
            if not (self.path / CKPT / "state.pt").exists():
                raise ConfigError(f"--resume given but {self.path} has no checkpoint", fix="drop --resume to start fresh")
            saved = {**(defaults or {}), **yaml.safe_load(cfg_path.read_text())}
            # keys in `resumable` (e.g. `steps`: train longer) may change; everything else must match exactly
            diff = sorted(k for k in set(saved) | set(config) if k not in resumable and saved.get(k) != config.get(k))
            if diff:
                raise ConfigError(f"--resume with a different config (keys {diff})",
                                  fix="resume with the same config, or use a new run dir")
        elif (self.path / CKPT).exists():
            raise ConfigError(f"{self.path} already holds a run", fix="pass --resume to continue it, or choose a new --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg_path, yaml.safe_dump(config, sort_keys=False))
        self.metrics_path = self.path / "metrics.jsonl"
        id_path = self.path / "run_id"  # names this run in checkpoint lineages (``cost``); kept across resumes
        if not id_path.exists():
            atomic_write_text(id_path, f"{self.path.name}-{uuid.uuid4().hex[:8]}\n")
        self.run_id = id_path.read_text().strip()
        self._clock, self._prior_s = time.perf_counter(), 0.0  # wall time of this session, and of earlier ones

    # ---------------------------------------------------------------------------------------- state
    def save(self, step: int, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             trainable_filter, extra: dict | None = None) -> None:
        state = {
            "step": step,
            "modules": {k: {n: t.detach().cpu() for n, t in m.state_dict().items() if trainable_filter(n)}
                        for k, m in modules.items()},
            "optim": {k: o.state_dict() for k, o in optimizers.items()},
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "extra": extra or {},
        }
        with atomic_dir(self.path / CKPT) as tmp:
            torch.save(state, tmp / "state.pt")

    def load(self, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> dict:
        state = torch.load(self.path / CKPT / "state.pt", weights_only=False, map_location="cpu")
        for k, m in modules.items():
            missing = m.load_state_dict(state["modules"][k], strict=False)
            assert not missing.unexpected_keys, missing.unexpected_keys
        for k, o in optimizers.items():
            o.load_state_dict(state["optim"][k])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        cuda_rng = state["rng"].get("cuda")
        if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
        self.truncate_metrics(state["step"])
        self._prior_s = wall_time_s(self.records())
        return state

    # ---------------------------------------------------------------------------------------- metrics
    def log(self, record: dict[str, Any]) -> None:
        """Append one step's record, stamped with ``wall_s``: wall time over every session of the run so far."""
        record = {**record, "wall_s": round(self._prior_s + time.perf_counter() - self._clock, 1)}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        if not self.metrics_path.exists():
            return
        keep = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.metrics_path, "".join(line + "\n" for line in keep))

    def records(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def wall_time_s(self) -> float:
        return wall_time_s(self.records())

    def plot(self, keys: tuple[str, ...] = ("loss", "fve_nrm", "reward", "eval_fve_nrm")) -> Path | None:
        """PNG of every logged key present, one panel each, against step."""
        recs = self.records()
        present = [k for k in keys if any(k in r for r in recs)]
        if not present:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
        for ax, k in zip(axes[0], present):
            pts = [(r["step"], r[k]) for r in recs if k in r and r[k] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
            ax.set_title(k)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out = self.path / "curves.png"
        fig.savefig(out, dpi=90)
        plt.close(fig)
        return out


def wall_time_s(records: list[dict]) -> float:
    """Training wall time over every session of a run (steps lost to a kill after the last checkpoint are not
    counted): the last record's ``wall_s`` stamp; for records written before stamps existed, each resume restarts
    ``elapsed_s`` from 0, so the sum of each session's last value."""
    if records and "wall_s" in records[-1]:
        return float(records[-1]["wall_s"])
    total, last = 0.0, 0.0
    for r in records:
        t = float(r.get("elapsed_s", 0.0))
        if t < last:  # a new session began
            total += last
        last = t
    return round(total + last, 1)


def lineage(trainings: list[dict | None]) -> tuple[dict[str, float], bool]:
    """The union of the training runs behind some checkpoints (their sidecars' ``training`` sections), as
    run id → wall time, and whether every checkpoint recorded its time. Runs two checkpoints share (the AV and
    AR of one GRPO run, both started from the same SFT runs) appear once. Sections written before the
    ``stages`` map existed contribute their total once per distinct value (the AV and AR of one run carry the
    same total)."""
    stages: dict[str, float] = {}
    complete = True
    for tr in trainings:
        tr = tr or {}
        if tr.get("stages"):
            stages.update({str(k): float(v) for k, v in tr["stages"].items()})
        elif tr.get("total_wall_time_s") is not None:
            stages.setdefault(f"total:{tr['total_wall_time_s']}", float(tr["total_wall_time_s"]))
        else:
            complete = False
    return stages, complete


def cost(run: RunDir, device: str, parents: tuple = ()) -> dict:
    """The training-cost fields of a checkpoint sidecar: this stage's wall time, the ``stages`` of its lineage
    (``parents``: the sidecars it started from, see ``lineage``) and their total, so a benchmark can report
    what an NLA cost. The total is None when a parent's time is unknown."""
    own = run.wall_time_s()
    stages, complete = lineage([p.training for p in parents])
    stages[run.run_id] = own
    total = round(sum(stages.values()), 1) if complete else None
    return {"device": str(device), "wall_time_s": own, "total_wall_time_s": total, "stages": stages}


def with_device(cfg: Any) -> Any:
    """``cfg`` with ``device`` resolved ('auto' → cuda when available) and a ``base_dtype`` of 'auto' named
    (bfloat16 on CUDA, float32 on the CPU), so the run dir records the real ones."""
    from dataclasses import replace

    from nla_audit.models import resolve_device, resolve_dtype

    dev = resolve_device(cfg.device)
    named = {}
    if getattr(cfg, "base_dtype", None) == "auto":
        named["base_dtype"] = str(resolve_dtype("auto", dev)).removeprefix("torch.")
    return replace(cfg, device=dev, **named)


def data_order(n: int, seed: int, step: int, batch_size: int) -> np.ndarray:
    """Row indices for ``step``: epoch-wise permutations seeded by (seed, epoch) — a pure function of step."""
    start = step * batch_size
    idx: list[int] = []
    while len(idx) < batch_size:
        epoch, offset = divmod(start + len(idx), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(batch_size - len(idx), n - offset)
        idx.extend(perm[offset:offset + take].tolist())
    return np.array(idx)


def lr_at(step: int, base_lr: float, warmup: int, total: int = 0, floor: float = 1.0) -> float:
    """Linear warm-up, then constant (``floor`` 1, the official FSDP path's effective schedule) or a cosine from
    ``base_lr`` down to ``floor × base_lr`` at step ``total``.

    Why a decay at all: with SGD-like noise, a constant LR levels off where the update noise balances the signal;
    lowering the LR late lowers that floor. ``total`` is the run's ``steps``; a resume that grew it would lift the
    LR back up, so GRPO refuses to change ``steps`` on resume when it decays."""
    ramp = min(1.0, (step + 1) / max(1, warmup))
    if floor >= 1.0 or total <= warmup:
        return base_lr * ramp
    t = min(1.0, max(0.0, (step - warmup) / (total - warmup)))
    return base_lr * ramp * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))
