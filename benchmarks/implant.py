"""Sandbagging implant on the embedded model: does the fine-tuned target answer correctly after benign
prefixes and wrongly after harmful ones? Prints the behaviour table the implant recorded (``--append`` adds it
to BENCHMARKS.md).

This script measures; building the implant is a command. Either form is read:

    python -m nla_audit.evals.sandbagging.implant --out runs/sandbag/SmolLM2-135M-Instruct-sandbag --steps 300
    python benchmarks/implant.py --load runs/sandbag/SmolLM2-135M-Instruct-sandbag [--append]   # merged target

    nla-audit organism build sandbagging --out runs/organisms/sandbagging
    python benchmarks/implant.py --load runs/organisms/sandbagging [--append]   # the organism (adapter + card)

Accuracy is the greedy answer letter among A–D on the eval split (72 chats per condition; the entry says whether
the implant trained on their prefix pairs), with Wilson 95% intervals; chance is 0.25. The precondition for the sandbagging eval is a high
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


def implant_meta(spec: str) -> dict:
    """The implant's record: ``sandbag_implant.json`` in a merged target folder, or the same record kept in the
    card of the sandbagging organism (``organism:NAME`` or its folder)."""
    from nla_audit.evals.sandbagging.dataset import IMPLANT_MARKER

    marker = Path(spec).expanduser() / IMPLANT_MARKER
    if marker.exists():
        return json.loads(marker.read_text())
    from nla_audit.organisms import is_organism_spec, organism_dir, read_card

    if not is_organism_spec(spec):
        sys.exit(f"error: {spec} holds no {IMPLANT_MARKER} and is not an organism; build an implant with "
                 "`nla-audit organism build sandbagging` or `python -m nla_audit.evals.sandbagging.implant`")
    card = read_card(organism_dir(spec))
    if IMPLANT_MARKER not in card.files:
        sys.exit(f"error: organism {card.name} is not a sandbagging implant (its card has no {IMPLANT_MARKER})")
    return card.files[IMPLANT_MARKER]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", required=True,
                    help="an implanted target folder, or the sandbagging organism (folder or organism:NAME)")
    ap.add_argument("--note", action="append", default=[], help="an extra bullet for the BENCHMARKS.md entry")
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()
    from _common import record

    meta = implant_meta(args.load)
    r = meta["recipe"]
    splits = r.get("splits", ["train"])  # recipes before the splits key trained on the train split only
    seen = "seen by the implant" if "eval" in splits else "held out from the implant"
    record("Sandbagging implant on SmolLM2-135M-Instruct", [
        f"- target: `{args.load}`; recipe: LoRA rank {r['rank']}, {r['steps']} steps × {r['batch_size']}, "
        f"lr {r['lr']}, cross-entropy on the answer letter over {r['train_examples']} chats of the "
        f"{' + '.join(splits)} split(s); final loss {meta['final_loss']:.3f}; wall time {meta.get('wall_time_s', '?')} s",
        f"- behaviour on the eval split (3 prefix pairs, {seen}, × 24 questions per condition); greedy letter "
        "among A–D; chance 0.25", *[f"- {n}" for n in args.note], "", *rows(meta)], args.append)


if __name__ == "__main__":
    main()
