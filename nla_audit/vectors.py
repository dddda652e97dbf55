"""Activation parquet files: the reference code's schema, streamed writes, numpy reads.

Vectors are stored raw (unnormalised) as ``fixed_size_list<float32>[d_model]``: fixed-size lists avoid the
int32 offset overflow of variable lists, and reads reshape the flat buffer instead of building Python lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nla_audit.errors import InputError

BASE_COLUMNS = ("activation_vector", "doc_id", "n_raw_tokens", "detokenized_text_truncated", "activation_layer")


def vector_schema(d_model: int, extra: dict[str, Any] | None = None):
    import pyarrow as pa

    fields = [
        pa.field("n_raw_tokens", pa.int64()),
        pa.field("detokenized_text_truncated", pa.string()),
        pa.field("activation_vector", pa.list_(pa.float32(), d_model)),
        pa.field("activation_layer", pa.int64()),
        pa.field("doc_id", pa.string()),
    ]
    for name, typ in (extra or {}).items():
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


class VectorWriter:
    """Append rows to a parquet file one row group at a time, so memory does not grow with the corpus."""

    def __init__(self, path: str | Path, d_model: int, extra: dict[str, Any] | None = None) -> None:
        import pyarrow.parquet as pq

        self.d_model = d_model
        self.schema = vector_schema(d_model, extra)
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self.rows = 0

    def write(self, columns: dict[str, Any]) -> None:
        import pyarrow as pa

        vecs = np.ascontiguousarray(columns["activation_vector"], dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.d_model:
            raise ValueError(f"vectors must be [n, {self.d_model}], got {vecs.shape}")
        arrays = []
        for f in self.schema:
            if f.name == "activation_vector":
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), self.d_model))
            else:
                arrays.append(pa.array(columns[f.name], type=f.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += len(vecs)

    def close(self) -> None:
        self._writer.close()


def read_vectors(path: str | Path, columns: list[str] | None = None) -> tuple[np.ndarray, dict[str, list]]:
    """Return (vectors[n, d] float32, other requested columns as lists)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"vector file {path} does not exist", fix="run `nla-audit extract` first")
    try:
        table = pq.read_table(path, columns=["activation_vector", *(columns or [])])
    except Exception as exc:
        raise InputError(f"cannot read {path} as an activation parquet ({str(exc).splitlines()[0]})",
                         expected=f"columns {list(BASE_COLUMNS)}") from None
    col = table.column("activation_vector").combine_chunks()
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n = len(col)
    if n == 0:
        return np.zeros((0, 0), np.float32), {c: [] for c in columns or []}
    if flat.size % n:
        raise InputError(f"{path}: activation_vector rows have different lengths", expected="one d_model for all rows")
    if not flat.flags.writeable:  # arrow's buffers are read-only; torch.from_numpy would warn on every use
        flat = flat.copy()
    return flat.reshape(n, -1), {c: table.column(c).to_pylist() for c in columns or []}
