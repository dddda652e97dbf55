"""The explainer interface shared by the NLA and its baselines (SAE, floors), so every eval task and every
agent tool can swap them: an explainer turns activation vectors from one site (model, layer K) into text.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Explainer(Protocol):
    """Anything that explains block-K activations of one target model in natural language."""

    name: str  # short id used in result tables, e.g. "nla", "nla-shuffled", "sae"

    @property
    def site(self) -> tuple[str, int]:
        """(base model name, layer K) the explainer reads; evals refuse a mismatched dataset."""
        ...

    def describe(self, vectors: torch.Tensor, **kwargs: Any) -> list[str]:
        """One explanation text per row of ``vectors`` ([n, d], raw activations)."""
        ...


class NLAExplainer:
    """The NLA's AV as an ``Explainer`` (greedy by default; each sampled call is seeded, so the same rows in the
    same batch give the same texts on a rerun)."""

    name = "nla"

    def __init__(self, nla: Any, max_new_tokens: int = 150, temperature: float = 0.0, seed: int = 0,
                 retries: int | None = None) -> None:
        from nla_audit.av import DEFAULT_RETRIES

        self.nla, self.max_new_tokens, self.temperature, self.seed = nla, max_new_tokens, temperature, seed
        self.retries = DEFAULT_RETRIES if retries is None else retries  # resamples of an unclosed explanation

    @property
    def site(self) -> tuple[str, int]:
        return (self.nla.base_model, self.nla.layer)

    def describe(self, vectors: torch.Tensor, **kwargs: Any) -> list[str]:
        kw = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
              "seed": self.seed if self.temperature > 0 else None,
              **({"retries": self.retries} if self.retries else {}), **kwargs}
        return [e.text for e in self.nla.generator.explain(vectors, **kw)]
