"""Shared helpers: machine description, and printing a figure or appending it as a dated entry to BENCHMARKS.md.

Every script prints its figure; only its ``--append`` flag records it (``record``). Scripts under
``experiments/`` import this module too (they put ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "BENCHMARKS.md"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    dev = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()} cores ({cpu}){dev}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def append(title: str, lines: list[str]) -> None:
    """Append a section to BENCHMARKS.md (what, command, machine, date, figures)."""
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    block = [f"\n### {title}", "", f"- command: `{cmd}`", f"- machine: {machine()}",
             f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {git_rev()}", *lines, ""]
    if not BENCH.exists():
        BENCH.write_text("# Benchmarks\n\nEvery entry is appended by a script under `benchmarks/` or `experiments/` "
                         "(with `--append`); rerun the command to reproduce. Ratios are taken within one run (the "
                         "machines are noisy).\n")
    with open(BENCH, "a", encoding="utf-8") as f:
        f.write("\n".join(block) + "\n")
    print("\n".join(block))


def record(title: str, lines: list[str], to_benchmarks: bool) -> None:
    """Print the entry; with ``to_benchmarks`` (the script's ``--append``) append it to BENCHMARKS.md too."""
    if to_benchmarks:
        append(title, lines)  # prints the block it appends
        return
    print("\n".join([f"\n### {title}", "", *lines, ""]))
    print("(printed only; rerun with --append to record it in BENCHMARKS.md)")


def load_nla_and_validation_rows(data: str, av: str, ar: str, choosing: str):
    """(NLA in float32, raw vectors, doc ids) for a benchmark that picks a decoding setting; the test split is
    refused, since a setting chosen on it would make the held-out score optimistic."""
    from nla_audit.nla import NLA
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.vectors import read_vectors

    if (read_dataset_sidecar(data).get("split") or {}).get("name") == "test":
        sys.exit(f"error: {data} is the test split; choose {choosing} on training-split or validation rows "
                 "(train av-texts writes them)")
    vecs, cols = read_vectors(data, ["doc_id"])
    return NLA.load(av, ar, dtype="float32"), vecs, list(cols["doc_id"])
