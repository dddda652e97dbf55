"""``nla-audit demo``: the end-to-end tour on the embedded default, offline.

1. converts the embedded SmolLM2-135M-Instruct once (cached);
2. extracts layer-K activations from the default corpus (a few documents) and prints their statistics;
3. if an NLA is available (the shipped default, or --av/--ar), explains a short chat transcript and writes
   an HTML view of it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="end-to-end tour on the embedded model (extract, then explain a transcript)")
    p.add_argument("--docs", type=int, default=16, help="documents of the default corpus to extract from")
    p.add_argument("--out-dir", default="nla_demo", help="where the parquet and HTML go")
    p.add_argument("--positions", default="header",
                   help="transcript positions to explain: header (the template tokens before the assistant's reply, "
                        "default), control, all, last, or i,j,...")
    from nla_audit.cli.explain import add_nla_args

    add_nla_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.paths import PACKAGE_DATA, default_nla_dir
    from nla_audit.vectors import read_vectors

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = extract_activations(ExtractConfig(out=str(out / "activations.parquet"), max_docs=args.docs, min_position=10))
    vecs, _ = read_vectors(res.out)
    norms = np.linalg.norm(vecs, axis=1)
    print(f"[1/2] extracted {res.rows} activations (layer {res.layer}, d={res.d_model}) from {res.docs} documents of "
          f"the default corpus at {res.tokens_per_s:,.0f} tokens/s → {res.out}; ‖v‖ mean {norms.mean():.1f}, "
          f"min {norms.min():.1f}, max {norms.max():.1f}")
    if args.av is None and default_nla_dir() is None:
        print("[2/2] no NLA installed yet: train one with `nla-audit train pipeline --run-dir runs/nla`, "
              "then pass --av/--ar", file=sys.stderr)
        return 0
    from nla_audit.atomic import atomic_write_text
    from nla_audit.cli.explain import sampling
    from nla_audit.corpus import iter_documents
    from nla_audit.nla import NLA
    from nla_audit.render import print_table, to_html

    nla = NLA.load(args.av, args.ar, args.dtype, args.device, args.backend)
    doc = next(iter_documents(PACKAGE_DATA / "demo_transcript.json"))
    from nla_audit.cli.explain import announce_default_system

    announce_default_system(nla, doc)
    rows = nla.explain_document(doc, args.positions, **sampling(args))
    print_table(rows, f"demo transcript · layer {nla.layer}")
    html_path = out / "transcript.html"
    from nla_audit.cli.explain import document_tokens

    atomic_write_text(html_path, to_html(rows, "nla-audit demo transcript", document_tokens(nla, doc)))
    print(f"[2/2] explained {len(rows)} position(s); HTML view: {html_path}")
    return 0
