"""The vLLM request path builds the same embeddings as the transformers hook (no vLLM needed)."""

from __future__ import annotations

import torch

from nla_audit.av import ActivationVerbalizer
from nla_audit.injection import injecting
from nla_audit.vllm_backend import requests_for
from tests.builders import build_tiny_nla


def test_prompt_embeds_match_hook(tiny_model_dir, tmp_path):
    av_dir, _ = build_tiny_nla(tiny_model_dir, tmp_path)
    av = ActivationVerbalizer.from_pretrained(av_dir)
    v = torch.randn(2, 64)
    reqs = requests_for(av, v, dtype=torch.float32)
    assert len(reqs) == 2 and reqs[0]["prompt_embeds"].shape == (len(av.prompt_ids), 64)
    captured = []
    emb = av.model.get_input_embeddings()
    ids = torch.tensor([av.prompt_ids] * 2)
    with injecting(av.model, av.meta.tokens, v, av.meta.injection_scale):
        h = emb.register_forward_hook(lambda m, i, o: captured.append(o))  # runs after the injection hook
        emb(ids)
        h.remove()
    for i in range(2):
        torch.testing.assert_close(reqs[i]["prompt_embeds"], captured[0][i].float())


def test_vllm_import_is_lazy():
    import sys

    assert "vllm" not in sys.modules
