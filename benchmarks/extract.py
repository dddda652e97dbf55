"""Extraction throughput vs a bare batched forward pass of the same documents, in one run.

The bare pass is the full model over the full documents (what any user would run to get hidden states);
extraction includes tokenization, position sampling, the stop-after-block-K forward, decoding of the text
prefixes and the streamed parquet write. Target ratio >= 0.9. Extraction stops after block K, so it can
exceed 1 — the note in BENCHMARKS.md says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from itertools import islice

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record

    from nla_audit.corpus import iter_documents, tokenize_document
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target

    target = load_target("default", dtype="float32")
    docs = list(islice(iter_documents("default"), args.docs))
    ids = [tokenize_document(d, target.tokenizer, 1024) for d in docs]
    n_tokens = sum(len(x) for x in ids)
    pad = target.tokenizer.pad_token_id

    def bare() -> float:
        t0 = time.perf_counter()
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # same length-sorting as extraction
        for i in range(0, len(order), args.batch_size):
            rows = [ids[j] for j in order[i:i + args.batch_size]]
            w = max(len(r) for r in rows)
            x = torch.full((len(rows), w), pad)
            m = torch.zeros_like(x)
            for k, r in enumerate(rows):
                x[k, : len(r)], m[k, : len(r)] = torch.tensor(r), 1
            with torch.inference_mode():
                target.model(input_ids=x, attention_mask=m, use_cache=False)
        return n_tokens / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "docs.jsonl")
        import json

        with open(corpus, "w") as f:
            for d in docs:
                f.write(json.dumps({"id": d.id, "text": d.text}) + "\n")

        def extract() -> float:
            cfg = ExtractConfig(out=os.path.join(tmp, "a.parquet"), corpus=corpus, batch_size=args.batch_size,
                                min_position=10, positions_per_doc=10)
            res = extract_activations(cfg, target=target, progress=False)
            return res.tokens / res.seconds

        bare(), extract()  # warm-up (kernel selection)
        b = [bare() for _ in range(args.repeats)]
        e = [extract() for _ in range(args.repeats)]
    bt, et = max(b), max(e)
    record("Activation extraction throughput", [
        f"- model: SmolLM2-135M-Instruct (embedded), fp32, layer 20 of 30, {args.docs} default-corpus documents, "
        f"{n_tokens} tokens, batch {args.batch_size}, 10 positions/doc, best of {args.repeats}",
        f"- bare batched forward (full model): {bt:,.0f} tokens/s",
        f"- `extract_activations` (tokenize + sample + forward to block K + parquet): {et:,.0f} tokens/s",
        f"- **ratio extract / bare = {et / bt:.2f}** (target >= 0.9; > 1 because extraction stops after block K and after the last sampled position of each document)",
    ], args.append)


if __name__ == "__main__":
    main()
