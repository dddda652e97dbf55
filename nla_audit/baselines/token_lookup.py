"""The final-token lookup: a reconstruction reference that knows only which token the activation sits on.

It predicts an activation's direction as the mean direction of the training activations taken at the same
token (the training mean direction for a token never seen). An explanation that only named the current token
could, at best, carry about this much; an NLA scoring near it says little beyond the token. It needs no
model: token ids and training vectors are enough, so it prices the cheapest possible "explanation".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / x.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)


class TokenLookup:
    """Per-token mean directions fitted on training vectors; ``predict`` falls back to the overall mean."""

    def __init__(self, centroids: dict[int, torch.Tensor], fallback: torch.Tensor) -> None:
        self.centroids, self.fallback = centroids, fallback

    @classmethod
    def fit(cls, vectors: torch.Tensor, token_ids: Sequence[int]) -> TokenLookup:
        if len(vectors) != len(token_ids) or len(vectors) == 0:
            raise ValueError(f"{len(vectors)} vectors vs {len(token_ids)} token ids (need the same, > 0)")
        u = unit(vectors)
        ids = torch.tensor(list(token_ids))
        keys, inverse = torch.unique(ids, return_inverse=True)
        sums = torch.zeros(len(keys), u.shape[1]).index_add_(0, inverse, u)
        counts = torch.bincount(inverse, minlength=len(keys)).unsqueeze(1)
        means = sums / counts
        return cls({int(k): means[i] for i, k in enumerate(keys)}, u.mean(dim=0))

    def predict(self, token_ids: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.centroids.get(int(t), self.fallback) for t in token_ids])

    def coverage(self, token_ids: Sequence[int]) -> float:
        """Fraction of ``token_ids`` seen in training (the rest get the overall mean direction)."""
        return sum(int(t) in self.centroids for t in token_ids) / max(1, len(token_ids))


def final_token_ids(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """The last token of each text (the ``detokenized_text_truncated`` column ends at the explained token).

    The text is re-tokenised, so a merge across the cut can, rarely, give another token than the model saw."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [row[-1] if row else -1 for row in ids]
