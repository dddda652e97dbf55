"""Loading a target causal LM (the embedded default, a local folder, or a hub id) and its layer facts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nla_audit.errors import InputError, ModelLoadError

DEFAULT_MODEL = "default"


def canonical_model_name(name_or_path: str | None) -> str:
    """The one name a target goes by in sidecars, sites and reports: every embedded alias (``default``,
    ``smollm2``, …) is the hub id; a local folder is its folder name; a hub id is itself. Two spellings of one
    model must not make the same-site checks refuse a comparison."""
    from nla_audit import embedded

    if name_or_path is None or name_or_path in embedded.ALIASES:
        return embedded.HUB_ID
    from nla_audit import organisms

    if organisms.is_organism_spec(name_or_path):
        return organisms.PREFIX + organisms.read_card(organisms.organism_dir(name_or_path)).name
    path = Path(name_or_path).expanduser()
    return path.resolve().name if path.exists() else name_or_path


def base_model_name(name_or_path: str | None) -> str:
    """The model a target was fine-tuned from, when it says so (an organism's card), else its own canonical name:
    an NLA trained on a base model reads the organisms built over it."""
    from nla_audit import organisms

    if name_or_path and organisms.is_organism_spec(name_or_path):
        return canonical_model_name(organisms.read_card(organisms.organism_dir(name_or_path)).base_model)
    card = organisms.card_of_model(name_or_path) if name_or_path and Path(name_or_path).expanduser().is_dir() else None
    return canonical_model_name(card.base_model) if card else canonical_model_name(name_or_path)


def materialize_organism(spec: str, progress: bool = True) -> Path:
    """An organism (``organism:NAME`` or its folder) as a merged HF folder in the cache, built once."""
    from nla_audit import organisms

    return organisms.materialize(spec, lambda base: load_target(base, dtype="float32", device="cpu"), progress)


def resolve_model_path(name_or_path: str | None) -> str:
    """Map the embedded aliases to the converted cache folder; pass local paths and hub ids through."""
    from nla_audit import embedded

    if name_or_path is None or name_or_path in embedded.ALIASES:
        return str(embedded.ensure_embedded_model())
    from nla_audit import organisms

    if organisms.is_organism_spec(name_or_path):
        return str(materialize_organism(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"model folder {path} has no config.json",
                                 expected="a Hugging Face model folder", fix="point --model at the folder holding config.json")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or os.sep in name_or_path.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"model path {name_or_path} does not exist",
                             fix="check the path, or pass 'default' for the embedded SmolLM2-135M-Instruct")
    return name_or_path  # a hub id; loading will say if the hub is unreachable


def resolve_dtype(dtype: str | Any, device: str) -> Any:
    """'auto' means bf16 on CUDA and fp32 on CPU (fp32 keeps CPU results exact and comparable)."""
    import torch

    if not isinstance(dtype, str):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise InputError(f"unknown dtype {dtype!r}", expected="auto, float32, bfloat16 or float16")
    return table[dtype]


def resolve_device(device: str | None) -> str:
    """'auto' (or None) means CUDA when available, else CPU; anything else must name a device torch knows."""
    import re

    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise InputError(f"unknown device {device!r}", expected="auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available", fix="use device cpu (or auto)")
    return device


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise ModelLoadError(f"cannot load tokenizer from {path}: {str(exc).splitlines()[0]}",
                             fix="check the model id/path; offline, use a local folder or 'default'") from None


def load_causal_lm(path: str, dtype: Any, device: str, config: Any = None):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars are enough
    if config is not None:
        hf_logging.set_verbosity_error()  # a truncated AR config leaves blocks > K "unexpected": by design
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config is not None:
        kwargs["config"] = config
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model from {path}: {str(exc).splitlines()[0]}",
                             fix="check the model id/path; offline, use a local folder or 'default'") from None
    return model.to(device).eval()


@dataclass
class Target:
    """A loaded target model with the facts the NLA needs about it."""

    model: Any
    tokenizer: Any
    path: str
    name: str

    @property
    def num_layers(self) -> int:
        return int(text_config(self.model.config).num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(text_config(self.model.config).hidden_size)

    @property
    def device(self):
        return next(self.model.parameters()).device


def text_config(config: Any) -> Any:
    """Multimodal wrappers (e.g. Gemma-3) keep the LM's config under ``text_config``."""
    return getattr(config, "text_config", None) or config


def default_layer(num_layers: int) -> int:
    """The reference preset rule: K = (2 · num_layers) // 3 (30 blocks → K = 20)."""
    return (2 * num_layers) // 3


def check_layer(layer: int, num_layers: int) -> int:
    if not 0 <= layer < num_layers:
        raise InputError(f"layer {layer} is out of range for a model with {num_layers} blocks",
                         expected=f"0 <= layer <= {num_layers - 1} (K = block whose output is captured)",
                         fix=f"omit --layer for the default {default_layer(num_layers)}")
    return layer


def decoder_layers(model: Any):
    """The list of decoder blocks, for the common HF layouts."""
    for path in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        try:
            for attr in path.split("."):
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            continue
    raise ModelLoadError(f"cannot find decoder layers on {type(model).__name__}",
                         expected="a Llama/Qwen/Gemma/GPT-2/NeoX-style causal LM")


def load_target(name_or_path: str | None = None, dtype: str = "auto", device: str | None = None) -> Target:
    """Load tokenizer + causal LM for ``name_or_path`` ('default' = embedded SmolLM2-135M-Instruct)."""
    path = resolve_model_path(name_or_path)
    dev = resolve_device(device)
    tok = load_tokenizer(path)
    model = load_causal_lm(path, resolve_dtype(dtype, dev), dev)
    return Target(model=model, tokenizer=tok, path=path, name=canonical_model_name(name_or_path))
