"""Reading an SAE folder's ``labels.json`` (one label and record per latent), apart from the labellers.

Why its own module: the SAE explainer (``sae``) reads labels, and the labellers (``sae_labels``) need the SAE
and its training data; with the reader here, neither imports the other in a circle.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from nla_audit.errors import InputError

LABELS_NAME = "labels.json"


def read_labels(folder: str | Path, d_sae: int | None = None) -> dict[int, str | None] | None:
    """Latent → label from ``labels.json``; None when the file is missing; one clear line when malformed."""
    records = read_latent_records(folder, d_sae)
    return None if records is None else {i: r.get("label") for i, r in records.items()}


def read_latent_records(folder: str | Path, d_sae: int | None = None) -> dict[int, dict] | None:
    """Latent → its whole labelling record (label, frequency, top contexts) from ``labels.json``; None when the
    file is missing. Cached per file version: agent tools look latents up one at a time in a 2 MB file."""
    path = Path(folder) / LABELS_NAME
    if not path.exists():
        return None
    doc = _load_labels(str(path), path.stat().st_mtime_ns)
    if d_sae is not None and doc.get("d_sae") != d_sae:
        raise InputError(f"{path} labels {doc.get('d_sae')} latents but the SAE has {d_sae}",
                         fix=f"relabel: nla-audit sae label --sae {folder} --data PARQUET")
    return doc["latents"]


@functools.lru_cache(maxsize=4)
def _load_labels(path: str, _mtime_ns: int) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        latents = {int(k): dict(v) for k, v in doc["latents"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is malformed ({type(exc).__name__})",
                         expected="a labels.json written by `nla-audit sae label`",
                         fix=f"delete it and rerun nla-audit sae label --sae {Path(path).parent}") from None
    return {"d_sae": doc.get("d_sae"), "latents": latents}
