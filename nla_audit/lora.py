"""Minimal LoRA adapters, so a small NLA (two adapters + the AR head) fits in the repository.

A checkpoint stores only the low-rank factors (``adapter.safetensors``) and names its base model in the
sidecar; loading merges them into the base weights, so inference runs a plain HF model at full speed.
Written here rather than taken from peft to keep the saved format tiny, explicit and dependency-free.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_FILE = "adapter.safetensors"
FORMAT = "nla_audit-lora-v1"


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · B(A(x))`` with B initialised to zero, so training starts at the base model."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=torch.float32, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=torch.float32, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = (x.to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T
        return self.base(x) + (delta * self.scaling).to(x.dtype)

    def merged(self) -> nn.Linear:
        w = self.base.weight.data.float() + self.scaling * (self.lora_B.data @ self.lora_A.data)
        self.base.weight.data = w.to(self.base.weight.dtype)
        return self.base


def add_lora(model: nn.Module, rank: int = 16, alpha: float = 32.0, targets: tuple[str, ...] = DEFAULT_TARGETS,
             freeze: bool = True) -> list[str]:
    """Wrap every ``nn.Linear`` whose name ends with a target in a ``LoRALinear``; freeze the rest."""
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    names = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name in targets:
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                names.append(f"{name}.{child_name}" if name else child_name)
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".lora_" in k}


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if ".lora_" in n]


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every ``LoRALinear`` by its merged ``nn.Linear`` (in place)."""
    for _name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    return model


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merged_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` with every adapter merged in: a plain HF model to sample from.

    Why: each ``LoRALinear`` adds five kernel launches to the base matmul's one, and a small model's decoding on
    a GPU is expected to be launch-bound (on a 2-core CPU, where it is compute-bound, the gain measured 1.07×;
    ``benchmarks/rollout_speed.py``); sampling from merged weights cuts those launches. This is the single-process
    counterpart of the reference's separate inference engine that receives the policy's weights each step.
    Keep it in step with :func:`sync_merged` after every optimiser step.
    """
    import copy

    twin = merge_lora(copy.deepcopy(model))
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


@torch.no_grad()
def sync_merged(model: nn.Module, twin: nn.Module) -> nn.Module:
    """Write ``base + scaling · B·A`` of each of ``model``'s adapters into ``twin``'s matching ``nn.Linear``.

    The merge is done in fp32 and cast once to the base dtype, so the twin's weights are the nearest
    representable merge (never an accumulation of per-step bf16 deltas).
    """
    twin_mods = dict(twin.named_modules())
    for name, lora in lora_modules(model).items():
        target = twin_mods.get(name)
        if not isinstance(target, nn.Linear):
            raise TypeError(f"the twin has no nn.Linear at {name!r}; build it with merged_copy(model)")
        w = lora.base.weight.float() + lora.scaling * (lora.lora_B @ lora.lora_A)
        target.weight.copy_(w.to(target.weight.dtype))
    return twin


def save_adapter(model: nn.Module, out_dir: str | Path, dtype: torch.dtype = torch.bfloat16) -> dict:
    from safetensors.torch import save_file

    state = {k: v.to(dtype) for k, v in lora_state_dict(model).items()}
    any_lora = next(m for m in model.modules() if isinstance(m, LoRALinear))
    save_file(state, str(Path(out_dir) / ADAPTER_FILE))
    targets = sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in state})
    return {"format": FORMAT, "file": ADAPTER_FILE, "rank": any_lora.rank, "alpha": any_lora.alpha, "targets": targets}


def load_adapter(model: nn.Module, ckpt_dir: str | Path, info: dict, merge: bool = True) -> nn.Module:
    """Attach the adapter described by the sidecar's ``adapter`` block; merge it unless training goes on."""
    from safetensors.torch import load_file

    from nla_audit.errors import SidecarError

    if info.get("format") != FORMAT:
        raise SidecarError(f"adapter format {info.get('format')!r} is not supported", expected=FORMAT)
    path = Path(ckpt_dir) / info.get("file", ADAPTER_FILE)
    if not path.exists():
        raise SidecarError(f"adapter weights {path} are missing", fix="restore the checkpoint folder")
    add_lora(model, int(info["rank"]), float(info["alpha"]), tuple(info["targets"]), freeze=True)
    state = load_file(str(path))
    missing = [k for k in state if k not in dict(model.named_parameters())]
    if missing:
        raise SidecarError(f"adapter {path} does not fit the base model ({missing[0]} has no match)",
                           fix="load it over the base model named in the sidecar")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return merge_lora(model) if merge else model

