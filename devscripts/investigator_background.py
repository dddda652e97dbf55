"""Build the systematic investigator's background (``investigator_background.json`` next to the shipped NLA): the
base model's replies, NLA explanations and SAE features over every probe, which audits are contrasted with.

    python devscripts/investigator_background.py [--out PATH] [--av AV --ar AR]

Rebuild it whenever the shipped NLA, the SAE or the probes change (agents/investigator.py). ~5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from nla_audit.agents.investigator import BACKGROUND_FILE, collect_background
    from nla_audit.agents.session import AuditConfig, AuditSession
    from nla_audit.atomic import atomic_write_text
    from nla_audit.paths import default_nla_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str((default_nla_dir() or ".") / BACKGROUND_FILE) if default_nla_dir() else None)
    ap.add_argument("--av", default=None)
    ap.add_argument("--ar", default=None)
    ap.add_argument("--sae", default="default")
    args = ap.parse_args()
    from nla_audit.evals.root_cause.task import AUDIT_SETTINGS

    session = AuditSession(AuditConfig(av=args.av, ar=args.ar, sae=args.sae, **AUDIT_SETTINGS))
    bg = asyncio.run(collect_background(session))
    atomic_write_text(args.out, json.dumps(bg, indent=0, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {bg['n']} transcripts read per channel")


if __name__ == "__main__":
    main()
