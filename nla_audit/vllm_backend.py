"""vLLM backend for the AV on GPU machines (``--backend vllm``), via prompt embeddings.

vLLM takes ``{"prompt_embeds": Tensor[T, d]}`` requests (``enable_prompt_embeds=True``). We build them by hand:
look up the prompt ids in the AV's embedding matrix, multiply by the architecture's embed scale (√d for Gemma;
the injected row is *not* scaled), and overwrite the injection row with ``normalize(v, injection_scale)`` —
the same numbers the transformers hook produces, so greedy decoding matches. ``vllm`` is imported only when
this backend is chosen; request building is pure and tested without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from nla_audit.av import ActivationVerbalizer, Explanation, resample_unclosed, validate_vectors
from nla_audit.errors import InjectionError, NLAAuditError
from nla_audit.injection import embed_scale, find_injection_sites
from nla_audit.metrics import normalize


def build_prompt_embeds(embedding: torch.Tensor, prompt_ids: list[int], vectors: torch.Tensor, av: ActivationVerbalizer,
                        scale: float) -> list[torch.Tensor]:
    """One ``[T, d]`` prompt-embedding tensor per vector (fp32 until the final cast, done by the caller)."""
    ids = torch.tensor([prompt_ids])
    sites = find_injection_sites(ids, av.meta.require_tokens())
    if sites.shape[0] != 1:
        raise InjectionError(f"AV prompt has {sites.shape[0]} injection sites", expected="exactly 1")
    pos = int(sites[0, 1])
    base = embedding[ids[0]].float() * scale
    out = []
    for v in normalize(vectors, av.meta.require_injection_scale()):
        e = base.clone()
        e[pos] = v
        out.append(e)
    return out


def requests_for(av: ActivationVerbalizer, vectors: Any, dtype: torch.dtype = torch.bfloat16) -> list[dict]:
    v = validate_vectors(vectors, av.d_model)
    emb = av.model.get_input_embeddings().weight.detach().cpu()
    embeds = build_prompt_embeds(emb, av.prompt_ids, v, av, embed_scale(av.model.config))
    if av.meta.require_injection_scale() >= 1000:
        dtype = torch.float32  # bf16 is too coarse for large injection scales
    return [{"prompt_embeds": e.to(dtype)} for e in embeds]


class VLLMVerbalizer:
    """Same ``.explain`` as ``ActivationVerbalizer``, generating with vLLM."""

    def __init__(self, av: ActivationVerbalizer, gpu_memory_utilization: float = 0.5, max_model_len: int = 1024) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise NLAAuditError("--backend vllm needs vLLM (CUDA only)", fix="pip install 'nla_audit[vllm]' on a GPU machine") from None
        self.av = av
        self.llm = LLM(model=str(merged_dir(av)), enable_prompt_embeds=True, dtype="bfloat16",
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)

    def explain(self, vectors: Any, max_new_tokens: int = 150, temperature: float = 0.0, top_p: float = 1.0,
                batch_size: int = 16, seed: int | None = None, retries: int = 0) -> list[Explanation]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed,
                                skip_special_tokens=False)
        outs = self.llm.generate(requests_for(self.av, vectors), params, use_tqdm=False)
        first = [self.av.to_explanation(list(o.outputs[0].token_ids), max_new_tokens) for o in outs]
        return resample_unclosed(self.explain, validate_vectors(vectors, self.av.d_model), first, retries,
                                 temperature, seed, max_new_tokens=max_new_tokens, top_p=top_p) if retries else first


def merged_dir(av: ActivationVerbalizer) -> Path:
    """vLLM loads weights from disk: save the (adapter-merged) AV once into the cache, keyed by its source."""
    from nla_audit.atomic import atomic_dir
    from nla_audit.paths import cache_dir

    key = hashlib.sha256(str(Path(av.source).resolve()).encode()).hexdigest()[:12]
    out = cache_dir() / "vllm" / key
    if not (out / "config.json").exists():
        with atomic_dir(out) as tmp:
            av.model.save_pretrained(tmp)
            av.tokenizer.save_pretrained(tmp)
    return out
