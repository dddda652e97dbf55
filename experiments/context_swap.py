"""What the AR does with the context part of an explanation: the AV's own quote, the true one, or none.

Finished experiment, run 2026-11-22 11:58 UTC, commit 802a998 (BENCHMARKS.md "AR use of the explanation's
context paragraph"; docs/results/ar-diagnostics.md). Answer: The AV's context quote carries real information
but is partly invented: for the step-300 pair on 200 held-out activations the AR scores the AV's text 0.277,
with the true context swapped in 0.371 (+0.09), with the paragraph emptied 0.192.

For NLAs trained with the offline teacher's format (``Recent context: “…”`` / ``Final token`` / ``Likely next
tokens`` paragraphs), the AV explains held-out activations (test split, sampled at ``--temperature``), and the
AR scores three versions of each explanation: as written; with the ``Recent context`` paragraph replaced by the
true last words of the text (what the teacher would have written); and with that paragraph emptied. The gap
between the first two says how much a correct context would be worth to this AR; the gap between the first
and the last, how much the AV's (often partly invented) quote carries now. Explanations without the paragraph
are left out and counted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))  # _common
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONTEXT = re.compile(r"^Recent context:.*?(?=\n\nFinal token)", re.S)


def true_context(text: str) -> str:
    """The teacher's own context paragraph for this text (its last words, quoted)."""
    from nla_audit.training.teacher import offline_explanation

    return offline_explanation(text, "", []).split("\n\n")[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--av", required=True)
    ap.add_argument("--ar", required=True)
    ap.add_argument("--data", required=True, help="held-out activation parquet (e.g. runs/nla/data/base.test.parquet)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record

    from nla_audit.evals._fve import bootstrap_ci, heldout_from_parquet
    from nla_audit.nla import NLA

    nla = NLA.load(args.av, args.ar, dtype="float32")
    held = heldout_from_parquet(args.data, nla.base_model, nla.layer, args.n)
    expl = nla.av.explain(held.vectors, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=0)
    keep = [i for i, e in enumerate(expl) if CONTEXT.search(e.text)]
    if not keep:
        sys.exit("error: no explanation has a 'Recent context' paragraph (expected an NLA trained on the offline teacher's format)")
    written = [expl[i].text for i in keep]
    variants = {
        "as written by the AV": written,
        "true recent context swapped in": [CONTEXT.sub(lambda _m, t=held.texts[i]: true_context(t), expl[i].text, count=1)
                                           for i in keep],
        "context paragraph emptied": [CONTEXT.sub("Recent context: (none).", t, count=1) for t in written],
    }
    gold = held.vectors[keep]
    lines = [f"- NLA: `{args.av}` + `{args.ar}`; held-out: {held.source}; {len(keep)} of {len(expl)} explanations "
             f"(temperature {args.temperature}, seed 0) have the paragraph", "",
             "| explanation given to the AR | fve_nrm mean [95% CI] |", "|---|---|"]
    for name, texts in variants.items():
        with torch.no_grad():
            sc = nla.ar.score(texts, gold)
        fve = sc["fve_nrm"].numpy()
        lo, hi = bootstrap_ci(fve, groups=[held.doc_ids[i] for i in keep])  # resampling documents
        lines.append(f"| {name} | {fve.mean():.3f} [{lo:.3f}, {hi:.3f}] |")
    lines += ["", "- Same rows in every line (paired): differences between lines are tighter than the CIs suggest."]
    record("AR use of the explanation's context paragraph", lines, args.append)


if __name__ == "__main__":
    main()
