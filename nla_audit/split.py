"""Document-level splits of an activation parquet: every row of a document lands in the same split.

A document's split is a pure function of ``sha256(f"{seed}|{doc_id}")``, so adding documents never moves
existing ones between splits, and the held-out split stays held out across re-extractions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from nla_audit.errors import InputError

DEFAULT_FRACTIONS = {"av_sft": 0.3, "ar_sft": 0.3, "rl": 0.3, "test": 0.1}


def parse_fractions(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"split spec {part!r} is not name=fraction", expected="e.g. av_sft=0.3,ar_sft=0.3,rl=0.3,test=0.1") from None
    total = sum(out.values())
    if not out or any(v < 0 for v in out.values()) or abs(total - 1.0) > 1e-6:
        raise InputError(f"split fractions sum to {total:.3f}", expected="non-negative fractions summing to 1")
    return out


def split_key(doc_id: str) -> str:
    """The unit a split keeps together: ``X#3`` (chunk 3 of document X, e.g. a ShareGPT conversation cut into
    records) → ``X``; any other id is its own unit."""
    head, sep, tail = doc_id.rpartition("#")
    return head if sep and head and tail.isdigit() else doc_id


def assign_split(doc_id: str, fractions: dict[str, float], seed: int) -> str:
    """A pure function of the seed and the document's ``split_key``: chunks of one document share a split."""
    u = int.from_bytes(hashlib.sha256(f"{seed}|{split_key(doc_id)}".encode()).digest()[:8], "little") / 2**64
    acc = 0.0
    for name, frac in fractions.items():
        acc += frac
        if u < acc:
            return name
    return list(fractions)[-1]


def split_dataset(path: str | Path, out_dir: str | Path, fractions: dict[str, float], seed: int = 42) -> dict[str, int]:
    import pyarrow.parquet as pq

    from nla_audit.atomic import atomic_path
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar

    path, out_dir = Path(path), Path(out_dir)
    meta = read_dataset_sidecar(path)
    table = pq.read_table(path)
    if "doc_id" not in table.column_names:
        raise InputError(f"{path} has no doc_id column", fix="re-extract with `nla-audit extract`")
    labels = np.array([assign_split(d, fractions, seed) for d in table.column("doc_id").to_pylist()])
    counts = {}
    for name in fractions:
        idx = np.nonzero(labels == name)[0]
        out = out_dir / f"{path.stem}.{name}.parquet"
        with atomic_path(out, ".parquet") as tmp:
            pq.write_table(table.take(idx), tmp, compression="zstd")
        sub = {k: v for k, v in meta.items() if k not in ("created_at", "kind", "schema_version")}
        sub.update(dataset_id=f"{meta.get('dataset_id', path.stem)}_{name}", row_count=int(len(idx)),
                   split={"name": name, "fractions": fractions, "seed": seed, "by": "doc_id (X#N chunks as X)"},
                   parent_datasets=[str(path)])
        write_dataset_sidecar(out, sub)
        counts[name] = int(len(idx))
    return counts
