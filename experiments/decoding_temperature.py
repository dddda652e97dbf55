"""Single-sample fve_nrm of one NLA at several AV decoding temperatures, on validation rows, paired.

Finished experiment, run 2026-11-23 02:38 UTC, commit 8520e32 (BENCHMARKS.md "AV decoding temperature on
validation rows"; docs/results/decoding-levers.md). Answer: Temperature is no lever: on 134 validation rows
(the AV then shipped, pooled step 80) T 0.3 and greedy score within +/-0.01 of T 0.7 (paired +0.005 and
+0.009, CIs across 0), so greedy stays the default.

Why: a decoding setting is a cheap lever if the AV's mode is better than its average sample (best-of-8 is far
above single samples). It must be chosen on rows that are not the test split, so the default rows are the
``ar_eval`` part that ``train av-texts`` writes (training-split documents no stage trained on).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))  # _common
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--av", default="nla_audit/data/nla/smollm2-135m-instruct/av")
    ap.add_argument("--ar", default="nla_audit/data/nla/smollm2-135m-instruct/ar")
    ap.add_argument("--data", required=True, help="validation activation parquet (not the test split)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 0.3, 0.0])
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import load_nla_and_validation_rows, record

    from nla_audit.evals._fve import bootstrap_ci
    from nla_audit.metrics import mse_nrm

    nla, vecs, docs = load_nla_and_validation_rows(args.data, args.av, args.ar, "decoding")
    v = torch.from_numpy(vecs.copy())  # CIs resample documents, not rows
    base = nla.ar.meta.fve_baseline()
    per_row, lines = {}, []
    for t in args.temperatures:
        ex = nla.av.explain(v, max_new_tokens=args.max_new_tokens, temperature=t, batch_size=16,
                            seed=0 if t > 0 else None)
        f = 1 - mse_nrm(nla.ar.reconstruct([e.text for e in ex]), v, nla.ar.meta.mse_scale) / base
        per_row[t] = f.numpy()
        lo, hi = bootstrap_ci(per_row[t], groups=docs)
        lines.append(f"- T {t}: fve_nrm {f.mean():.3f} [{lo:.3f}, {hi:.3f}], median {f.median():.3f}, "
                     f"failed parse {sum(not e.ok for e in ex) / len(ex):.2f}")
    first = args.temperatures[0]
    for t in args.temperatures[1:]:
        lo, hi = bootstrap_ci(per_row[t] - per_row[first], groups=docs)
        lines.append(f"- T {t} − T {first} (paired, same rows): {(per_row[t] - per_row[first]).mean():+.3f} "
                     f"[{lo:+.3f}, {hi:+.3f}]")
    record("AV decoding temperature on validation rows",
           [f"- NLA: {args.av} + {args.ar}; {len(v)} rows of {args.data}; seed 0, max_new_tokens "
            f"{args.max_new_tokens}, fp32", *lines], args.append)


if __name__ == "__main__":
    main()
