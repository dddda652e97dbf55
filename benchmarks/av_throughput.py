"""AV explanations/s: batched ``.explain`` vs a per-vector loop on the same vectors, and AR texts/s.

Target: batched >= 4x the loop at batch 16 on CPU. Uses the shipped default NLA unless --av/--ar are given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--av", default=None)
    ap.add_argument("--ar", default=None)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record

    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.nla import NLA
    from nla_audit.vectors import read_vectors

    nla = NLA.load(args.av, args.ar, dtype="float32")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "v.parquet")
        extract_activations(ExtractConfig(out=out, max_docs=args.n, positions_per_doc=1, min_position=10),
                            target=nla.target, progress=False)
        vecs = torch.from_numpy(read_vectors(out)[0].copy())[: args.n]
    kw = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0}
    nla.av.explain(vecs[:2], **kw)  # warm-up
    t0 = time.perf_counter()
    batched = nla.av.explain(vecs, batch_size=args.batch_size, **kw)
    tb = time.perf_counter() - t0
    t0 = time.perf_counter()
    looped = [nla.av.explain(v, **kw)[0] for v in vecs]
    tl = time.perf_counter() - t0
    same = sum(a.raw == b.raw for a, b in zip(batched, looped))
    texts = [e.text for e in batched] * 4
    nla.ar.reconstruct(texts[:4])
    t0 = time.perf_counter()
    nla.ar.reconstruct(texts, batch_size=32)
    ta = time.perf_counter() - t0
    n = len(vecs)
    record("AV/AR inference throughput", [
        f"- NLA: {nla.av.source} + {nla.ar.source}; {n} real layer-{nla.layer} activations; greedy, "
        f"max_new_tokens {args.max_new_tokens}; fp32 CPU",
        f"- batched `.explain` (batch {args.batch_size}): {n / tb:.2f} explanations/s",
        f"- per-vector loop: {n / tl:.2f} explanations/s",
        f"- **speed-up batched / loop = {tl / tb:.1f}x** (target >= 4x); identical greedy outputs: {same}/{n}",
        f"- AR `.reconstruct`: {len(texts) / ta:.1f} texts/s (batch 32)",
    ], args.append)


if __name__ == "__main__":
    main()
