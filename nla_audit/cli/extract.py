"""``nla-audit extract``: corpus → activation parquet + dataset sidecar."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("extract", help="extract residual-stream activations from a causal LM over a corpus")
    p.add_argument("--model", default="default", help="HF id, local folder, or 'default' (embedded SmolLM2-135M-Instruct)")
    p.add_argument("--layer", type=int, default=None, help="block K whose output is captured (= hidden_states[K+1]); default (2*L)//3")
    p.add_argument("--corpus", default="default",
                   help="JSONL/JSON/parquet/text file or folder, 'default' (fortunes), 'sharegpt' (chats), 'mix' "
                        "(half chat, half text by tokens; 'mix:0.7' for another chat share), or hf:<dataset>")
    p.add_argument("--out", required=True, help="output parquet path")
    p.add_argument("--positions", default="10", help="positions per document (an integer) or 'all'")
    p.add_argument("--min-position", type=int, default=50,
                   help="text documents: skip positions below this index (default 50); chats sample from position 1")
    p.add_argument("--control-share", type=float, default=0.25,
                   help="chats: share of positions at chat-template tokens such as the assistant header (default 0.25)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-length", type=int, default=1024, help="truncate documents to this many tokens")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-docs", type=int, default=None)
    p.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_positions(value: str) -> tuple[int, bool]:
    from nla_audit.errors import InputError

    if value == "all":
        return 1, True
    try:
        return int(value), False
    except ValueError:
        raise InputError(f"--positions {value!r} is not understood", expected="an integer or 'all'") from None


def run(args) -> int:
    from nla_audit.extract import ExtractConfig, extract_activations

    k, all_pos = parse_positions(args.positions)
    cfg = ExtractConfig(out=args.out, model=args.model, corpus=args.corpus, layer=args.layer, positions_per_doc=k,
                        all_positions=all_pos, min_position=args.min_position, seed=args.seed,
                        max_length=args.max_length, batch_size=args.batch_size, max_docs=args.max_docs,
                        dtype=args.dtype, device=args.device, control_share=args.control_share)
    res = extract_activations(cfg, progress=not args.quiet)
    print(f"wrote {res.rows} rows from {res.docs_used}/{res.docs} documents (layer {res.layer}, d={res.d_model}) "
          f"to {res.out}; {res.tokens_per_s:,.0f} tokens/s")
    return 0
