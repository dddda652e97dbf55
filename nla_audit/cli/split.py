"""``nla-audit split``: split an activation parquet by document."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("split", help="split an activation parquet by document (never by row)")
    p.add_argument("input", help="activation parquet written by `nla-audit extract`")
    p.add_argument("--out-dir", default=None, help="default: next to the input")
    p.add_argument("--fractions", default="av_sft=0.3,ar_sft=0.3,rl=0.3,test=0.1")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from nla_audit.split import parse_fractions, split_dataset

    out_dir = args.out_dir or str(Path(args.input).parent)
    counts = split_dataset(args.input, out_dir, parse_fractions(args.fractions), args.seed)
    for name, n in counts.items():
        print(f"{name}: {n} rows")
    return 0
