"""Where nla_audit keeps its caches and ships its data.

One place so tests can redirect everything with ``NLA_AUDIT_CACHE`` and nothing writes to surprising spots.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_DATA = PACKAGE_DIR / "data"


def cache_dir() -> Path:
    """Root cache folder: ``$NLA_AUDIT_CACHE`` or ``~/.cache/nla_audit``."""
    root = os.environ.get("NLA_AUDIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "nla_audit")
    return Path(root)


def default_nla_dir() -> Path | None:
    """The shipped default NLA for the embedded model, or None until one has been trained and committed."""
    candidate = PACKAGE_DATA / "nla" / "smollm2-135m-instruct"
    return candidate if (candidate / "av" / "nla_meta.yaml").exists() else None
