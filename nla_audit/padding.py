"""One padding helper for every batch of token rows (generation, extraction, training).

Left padding keeps each prompt's last token at the right edge, where generation continues; right padding keeps
positions aligned from the start, which training losses and activation capture index by. ``multiple`` rounds
the width up (a few distinct shapes keep CPU kernels from re-compiling per batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad(rows: Sequence[Sequence[int]], fill: int, side: str = "right", width: int | None = None,
        multiple: int = 1) -> torch.Tensor:
    """``rows`` as one [B, width] long tensor, ``fill`` where a row is shorter."""
    if side not in ("left", "right"):
        raise ValueError(f"side {side!r}: expected 'left' or 'right'")
    width = width if width is not None else max(len(r) for r in rows)
    width = -(-width // multiple) * multiple
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            if side == "left":
                out[i, width - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
            else:
                out[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    return out


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right",
              multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) for ``rows``."""
    ids = pad(rows, pad_id, side, multiple=multiple)
    mask = pad([[1] * len(r) for r in rows], 0, side, width=ids.shape[1])
    return ids, mask
