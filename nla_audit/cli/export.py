"""``nla-audit export``: write an NLA pair in the released full-weight format (adapters merged)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="write an AV/AR pair as full HF checkpoints (the released format)")
    p.add_argument("--av", default=None)
    p.add_argument("--ar", default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from nla_audit.checkpoint import export_full
    from nla_audit.nla import NLA

    nla = NLA.load(args.av, args.ar, dtype="float32", device="cpu")
    av, ar = export_full(nla.av, nla.ar, args.out)
    print(f"AV: {av}\nAR: {ar}")
    return 0
