"""Regenerate the eval tasks' shipped datasets (``evals/<task>/data.json``) from their builders, seed 0.

The JSON ships so every user scores the same items; this rebuilds it after a builder changes, and ``--check``
says whether the shipped files still match their builders (what the dataset tests assert).

    python -m nla_audit.evals.datasets [--check] [TASK ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def regenerate(task: str, check: bool = False) -> bool:
    """Write (or, with ``check``, compare) one task's seed-0 dataset; True when the shipped file matches."""
    from nla_audit.evals._items import write_dataset

    ds = importlib.import_module(f"nla_audit.evals.{task}.dataset").build(0)
    path = HERE / task / "data.json"
    same = path.exists() and json.loads(path.read_text(encoding="utf-8")) == json.loads(ds.to_json())  # version too
    if not check and not same:
        write_dataset(path, ds)
    print(f"{task}: {len(ds.items)} items (version {ds.version}, seed 0) {'match' if same else 'differ from'} {path}"
          + ("" if check or same else " → rewritten"))
    return same


def main(argv: list[str] | None = None) -> int:
    from nla_audit.evals import TASKS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*", help=f"default: all ({', '.join(TASKS)})")
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a shipped file differs")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        print(f"error: unknown eval task(s) {', '.join(unknown)}; expected some of {', '.join(TASKS)}", file=sys.stderr)
        return 2
    results = [regenerate(t, args.check) for t in args.tasks or TASKS]
    return 0 if all(results) or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
