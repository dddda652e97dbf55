"""Single-sample fve_nrm of one NLA under activation guidance (CFG against the mean activation), paired, on
training-split rows.

Finished experiment, run 2026-11-23 17:03 UTC (guidance, commit d2da5ea) and 18:15 UTC (injection gain, commit
e38c54e) (BENCHMARKS.md "AV activation guidance on training-split rows" and "... and injection gain ...";
docs/results/decoding-levers.md). Answer: Neither is a lever: guidance lowers single-sample fve_nrm at every
weight (paired -0.042 at w 1.5, -0.098 at 2, -0.419 at 3), and scaling the injected norm by 0.8 or 1.25 lowers
it by about 0.02. Nothing uses either by default.

Why: every single-sample lever measured so far (temperature, KL, AR refit, expert iteration) is flat, while
best-of-8 shows the AV's samples hold more than one draw delivers. Guidance makes each token lean toward what
*this* activation supports beyond a typical one (the AR sidecar's training mean direction), at twice the
forward cost and with no reranking against the activation. The weight must be chosen off the test split: the
rows here are a seeded draw of documents from a training parquet (the RL split by default); a winning weight
would then be scored on the test split (none won, so ``benchmarks/fve.py`` has no guidance option).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))  # _common
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pick_rows(doc_ids: list, n_docs: int, per_doc: int, seed: int) -> list[int]:
    """The first ``per_doc`` rows of ``n_docs`` seeded-random documents: whole documents, so CIs can resample them."""
    import random

    by_doc: dict = {}
    for i, d in enumerate(doc_ids):
        by_doc.setdefault(d, []).append(i)
    chosen = random.Random(seed).sample(sorted(by_doc), min(n_docs, len(by_doc)))
    return [i for d in chosen for i in by_doc[d][:per_doc]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--av", default="nla_audit/data/nla/smollm2-135m-instruct/av")
    ap.add_argument("--ar", default="nla_audit/data/nla/smollm2-135m-instruct/ar")
    ap.add_argument("--data", default="runs/nla/data/base.rl.parquet", help="a training-split activation parquet")
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--positions", type=int, default=2)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--injection-gain", type=float, nargs="*", default=[],
                    help="also plain sampling with the injected vector's norm scaled by G (injection_scale × G)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import load_nla_and_validation_rows, record

    from nla_audit.evals._fve import bootstrap_ci
    from nla_audit.guidance import generate_guided
    from nla_audit.metrics import mse_nrm

    nla, vecs, doc_ids = load_nla_and_validation_rows(args.data, args.av, args.ar, "the guidance weight")
    rows = pick_rows(doc_ids, args.docs, args.positions, seed=0)
    v, docs = torch.from_numpy(vecs[rows].copy()), [doc_ids[i] for i in rows]
    null, base = torch.tensor(nla.ar.meta.mean_direction), nla.ar.meta.fve_baseline()
    per_w, lines = {}, []

    def score(label: str, w: float) -> str:
        """One seeded draw at guidance ``w`` and the AV's current injection scale, kept under ``label``."""
        ids = generate_guided(nla.av, v, null, w, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                     batch_size=args.batch_size, seed=0)
        ex = [nla.av.to_explanation(r, args.max_new_tokens) for r in ids]
        f = 1 - mse_nrm(nla.ar.reconstruct([e.text for e in ex]), v, nla.ar.meta.mse_scale) / base
        per_w[label] = f.numpy()
        lo, hi = bootstrap_ci(per_w[label], groups=docs)
        lines.append(f"- {label}: fve_nrm {f.mean():.3f} [{lo:.3f}, {hi:.3f}], median {f.median():.3f}, "
                     f"failed parse {sum(not e.ok for e in ex) / len(ex):.2f}, mean length "
                     f"{sum(e.n_tokens for e in ex) / len(ex):.0f} tokens")
        print(lines[-1], flush=True)
        return label

    labels = [score(f"guidance {w}", w) for w in args.guidance]
    scale = nla.av.meta.injection_scale
    for g in args.injection_gain:  # the same sampler as guidance 1.0, only the injected norm changes
        nla.av.meta = nla.av.meta.with_(injection_scale=scale * g)
        labels.append(score(f"injection gain {g} (injection_scale {scale * g:g}, guidance 1)", 1.0))
    nla.av.meta = nla.av.meta.with_(injection_scale=scale)
    for label in labels[1:]:
        d = per_w[label] - per_w[labels[0]]
        lo, hi = bootstrap_ci(d, groups=docs)
        lines.append(f"- {label} − {labels[0]} (paired, same rows): {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")
    title = "AV activation guidance" + (" and injection gain" if args.injection_gain else "")
    record(f"{title} on training-split rows",
           [(f"- NLA: {args.av} + {args.ar}; {len(v)} rows of {len(set(docs))} documents of {args.data} (seeded "
             f"draw, not the test split); T {args.temperature}, seed 0, max_new_tokens {args.max_new_tokens}, fp32; "
             "null vector: the AR sidecar's training mean direction; guidance 1.0 is plain sampling"), *lines], args.append)


if __name__ == "__main__":
    main()
