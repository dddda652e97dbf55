"""Project invariants: the core never imports the optional subpackages; every package folder is installed;
``import nla_audit`` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_never_imports_training_evals_agents():
    pattern = re.compile(r"^\s*(from|import)\s+nla_audit\.(training|evals|agents)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "nla_audit").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = {v: k for k, v in cfg["package-dir"].items()}
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        top = rel.parts[0]
        if top not in mapping:
            continue
        found.add(".".join([mapping[top], *rel.parts[1:]]))
    assert found - listed == set(), f"package folders missing from pyproject packages: {found - listed}"


def test_import_is_light():
    code = "import sys, nla_audit; print(sorted(m for m in ('torch', 'transformers', 'sae_lens', 'inspect_ai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
