"""Activation guidance (research, off every default path): classifier-free guidance for the AV's decoding.

The "unconditional" branch is the AV reading a reference vector (the training mean direction: what it says of
a typical activation); each token is drawn from ``u + w (c − u)`` in log-probabilities, so ``w`` > 1 pushes
toward what *this* activation supports beyond the typical one. Twice the forward cost of plain decoding;
``w == 1`` is plain decoding. On the shipped NLA every weight above 1 lowered fve_nrm (docs/results), which is
why this lives apart from the ``ActivationVerbalizer``: the product decodes plainly; the benchmark
``experiments/decoding_guidance.py`` and notebooks call ``generate_guided``.
"""

from __future__ import annotations

import inspect

import torch

from nla_audit.av import ActivationVerbalizer, strip_after_eos, validate_vectors
from nla_audit.errors import InputError
from nla_audit.injection import injecting


def guided_logprobs(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance in log-probability space, renormalised: ``u + w (c − u)``; w = 1 gives ``c``."""
    return (uncond + guidance * (cond - uncond)).log_softmax(-1)


def sample_token(logp: torch.Tensor, temperature: float) -> torch.Tensor:
    """Greedy at temperature 0, else one draw from ``softmax(logp / T)`` per row."""
    if temperature <= 0:
        return logp.argmax(-1)
    return torch.multinomial((logp / temperature).softmax(-1), 1)[:, 0]


def generate_guided(av: ActivationVerbalizer, vectors: torch.Tensor, null_vector: torch.Tensor, guidance: float,
                    max_new_tokens: int = 150, temperature: float = 0.0, batch_size: int = 16,
                    seed: int | None = None) -> list[list[int]]:
    """Response ids of ``av`` decoded with activation guidance against ``null_vector`` (module docstring);
    seeded like ``ActivationVerbalizer.generate``. Parse them with ``av.to_explanation``."""
    v = validate_vectors(vectors, av.d_model)
    null = validate_vectors(null_vector, av.d_model, name="null_vector")
    if len(null) != 1:
        raise InputError(f"null_vector has {len(null)} rows", expected="one vector of shape [d] or [1, d]",
                         fix="pass a single reference vector, e.g. the AR sidecar's mean_direction")
    return av._seeded_batches(v, batch_size, seed, lambda chunk: _guided_batch(
        av, chunk, null[0], guidance, max_new_tokens, temperature))


def _guided_batch(av: ActivationVerbalizer, v: torch.Tensor, null: torch.Tensor, guidance: float,
                  max_new_tokens: int, temperature: float) -> list[list[int]]:
    """One KV-cached decode over 2n rows (n real, n null) that share each sampled token."""
    n, dev, eos = len(v), av.device, av.tokenizer.eos_token_id
    ids = torch.tensor([av.prompt_ids] * (2 * n), device=dev)
    mask = torch.ones_like(ids)
    both = torch.cat([v, null.expand(n, -1)])
    with torch.inference_mode():
        with injecting(av.model, av.meta.require_tokens(), both, av.meta.require_injection_scale()):
            step = av.model(input_ids=ids, attention_mask=mask, use_cache=True, **_last_logits_only(av.model))
        past, done = step.past_key_values, torch.zeros(n, dtype=torch.bool, device=dev)
        new: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            logp = step.logits[:, -1].float().log_softmax(-1)
            tok = sample_token(guided_logprobs(logp[:n], logp[n:], guidance), temperature)
            tok = torch.where(done, torch.full_like(tok, av.pad_id), tok)
            new.append(tok)
            done |= tok == eos
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((2 * n, 1), dtype=mask.dtype, device=dev)], dim=1)
            step = av.model(input_ids=torch.cat([tok, tok])[:, None], attention_mask=mask,
                            past_key_values=past, use_cache=True)
            past = step.past_key_values
    rows = torch.stack(new, dim=1).tolist()
    return [strip_after_eos(row, eos, av.pad_id) for row in rows]


def _last_logits_only(model: torch.nn.Module) -> dict:
    """``logits_to_keep=1`` where the model takes it: the prompt pass then skips [2n, prompt, vocab] logits."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
