"""The only place that reaches a model or dataset hub. Offline (the usual case here) it fails with a clear
line instead of a long network traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nla_audit.errors import InputError


def iter_hf_dataset(spec: str) -> Iterator[dict[str, Any]]:
    """``name[:split[:column]]`` → records with a ``text`` field (streaming, so nothing is cached whole)."""
    parts = spec.split(":")
    name, split = parts[0], (parts[1] if len(parts) > 1 and parts[1] else "train")
    column = parts[2] if len(parts) > 2 else None
    try:
        import datasets
    except ImportError:
        raise InputError(f"hf:{spec} needs the 'datasets' package", fix="pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
        for rec in ds:
            if column:
                yield {"text": rec[column]}
            elif "messages" in rec or "text" in rec:
                yield rec
            else:
                raise InputError(f"dataset {name} has no 'text'/'messages' column",
                                 fix=f"name the text column: hf:{name}:{split}:<column>")
    except InputError:
        raise
    except Exception as exc:  # connection errors come in many types
        raise InputError(f"cannot load dataset {name} from the hub ({type(exc).__name__})",
                         fix="the hub is unreachable offline: download it elsewhere and pass a local file") from None


def snapshot(repo_id: str):
    """Download (or reuse the local HF cache of) a model repo; offline this raises a one-line error."""
    from pathlib import Path

    from nla_audit.errors import ModelLoadError

    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise ModelLoadError(f"{repo_id} is neither an existing folder nor a hub id",
                             expected="a local checkpoint folder or 'owner/name'")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as exc:  # offline, 404, auth: many exception types
        raise ModelLoadError(f"cannot fetch {repo_id} from the hub ({type(exc).__name__})",
                             fix="the hub is unreachable offline: copy the checkpoint here and pass its folder") from None
