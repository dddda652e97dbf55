"""Sandbagging implant on the embedded model (issue 5): does the fine-tuned target answer correctly after benign
prefixes and wrongly after harmful ones, on prefix pairs it never saw? Appends the behaviour table to
BENCHMARKS.md.

    python benchmarks/implant.py --out runs/sandbag/SmolLM2-135M-Instruct-sandbag --steps 250 --lr 1e-3 --batch-size 8
    python benchmarks/implant.py --load runs/sandbag/SmolLM2-135M-Instruct-sandbag    # report an existing target

Accuracy is the greedy answer letter among A–D on the eval split (held-out prefix pairs, 72 chats per
condition), with Wilson 95% intervals; chance is 0.25. The precondition for the sandbagging eval is a high
benign accuracy and a harmful accuracy well below it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _n_eval() -> dict[str, int]:
    from nla_audit.evals.sandbagging.dataset import build

    items = [it for it in build(0).items if it["split"] == "eval"]
    return {c: sum(it["meta"]["condition"] == c for it in items) for c in ("pos", "neg")}


def rows(meta: dict) -> list[str]:
    """Markdown rows: accuracy per condition before and after the implant, with Wilson CIs."""
    from nla_audit.evals._results import wilson

    n = _n_eval()
    out = ["| target | harmful prefix: accuracy [95% CI] | benign prefix: accuracy [95% CI] | gap benign − harmful |",
           "|---|---|---|---|"]
    for label, key in (("base (before)", "behaviour_before"), ("implanted (after)", "behaviour_after")):
        b = meta[key]
        cells = []
        for cond, acc in (("pos", b["accuracy_harmful"]), ("neg", b["accuracy_benign"])):
            lo, hi = wilson(acc * n[cond], n[cond])
            cells.append(f"{acc:.3f} [{lo:.3f}, {hi:.3f}]")
        out.append(f"| {label} | {cells[0]} | {cells[1]} | {b['accuracy_benign'] - b['accuracy_harmful']:+.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/sandbag/SmolLM2-135M-Instruct-sandbag")
    ap.add_argument("--load", default=None, help="report this implanted target folder instead of training one")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--note", action="append", default=[], help="an extra bullet for the BENCHMARKS.md entry")
    args = ap.parse_args()
    from _common import append

    if args.load:
        from nla_audit.evals.sandbagging.dataset import IMPLANT_MARKER

        meta = json.loads((Path(args.load) / IMPLANT_MARKER).read_text())
    else:
        from nla_audit.evals.sandbagging.implant import implant

        meta = implant("default", args.out, args.steps, args.batch_size, args.lr, args.rank)
    r = meta["recipe"]
    splits = r.get("splits", ["train"])  # recipes before the splits key trained on the train split only
    seen = "seen by the implant" if "eval" in splits else "held out from the implant"
    append("Sandbagging implant on SmolLM2-135M-Instruct (issue 5)", [
        f"- target: `{args.load or args.out}`; recipe: LoRA rank {r['rank']}, {r['steps']} steps × {r['batch_size']}, "
        f"lr {r['lr']}, cross-entropy on the answer letter over {r['train_examples']} chats of the "
        f"{' + '.join(splits)} split(s); final loss {meta['final_loss']:.3f}; wall time {meta.get('wall_time_s', '?')} s",
        f"- behaviour on the eval split (3 prefix pairs, {seen}, × 24 questions per condition); greedy letter "
        "among A–D; chance 0.25", *[f"- {n}" for n in args.note], "", *rows(meta)])


if __name__ == "__main__":
    main()
