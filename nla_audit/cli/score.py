"""``nla-audit score``: round-trip quality of an NLA on a corpus (explain → reconstruct → fve_nrm)."""

from __future__ import annotations

import json
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("score", help="fve_nrm / mse_nrm / cos of an NLA on texts (sampled positions)")
    p.add_argument("--texts", required=True,
                   help="corpus: JSONL ({id,text} or {id,messages}), text, parquet, folder, default, sharegpt, mix")
    p.add_argument("--positions-per-doc", type=int, default=4)
    p.add_argument("--min-position", type=int, default=10)
    p.add_argument("--max-docs", type=int, default=None)
    p.add_argument("--json", action="store_true")
    from nla_audit.cli.explain import add_nla_args

    add_nla_args(p)
    p.set_defaults(func=run)


def score_corpus(nla, corpus: str, positions_per_doc: int, min_position: int, max_docs: int | None, sampling: dict,
                 progress=None) -> dict:
    """Round-trip scores over sampled positions of a corpus, overall and by position kind (``text``; for chats
    ``content`` and ``control``, the template tokens, drawn at the extraction's control share)."""
    import torch

    from nla_audit.corpus import iter_documents
    from nla_audit.errors import InputError
    from nla_audit.extract import (
        CONTROL_SHARE,
        position_kinds,
        prepare_document,
        sample_chat_positions,
        sample_positions,
        special_token_ids,
    )
    from nla_audit.nla import MAX_DOCUMENT_TOKENS

    tok = nla.target.tokenizer
    specials = special_token_ids(tok)
    vecs: list[Any] = []
    kinds: list[str] = []
    for i, doc in enumerate(iter_documents(corpus, tok, MAX_DOCUMENT_TOKENS)):
        if max_docs is not None and i >= max_docs:
            break
        _, layout = prepare_document(doc, tok, MAX_DOCUMENT_TOKENS)
        ids, acts = nla.document_activations(doc)
        pos = (sample_chat_positions(layout, positions_per_doc, CONTROL_SHARE, 0, doc.id) if layout is not None
               else sample_positions(ids, specials, min_position, positions_per_doc, 0, doc.id))
        vecs.extend(acts[p] for p in pos)
        kinds += position_kinds(layout, pos)
    if not vecs:
        raise InputError(f"no usable positions in {corpus}", fix="lower --min-position or pass longer texts")
    rows = nla.explain_vectors(torch.stack(vecs), progress=progress, **sampling)
    out = _summary(rows, sampling)
    out["by_kind"] = {k: _summary([r for r, kk in zip(rows, kinds) if kk == k], sampling)["fve_nrm"] | {
        "n": kinds.count(k)} for k in dict.fromkeys(kinds)}
    out["fve_baseline_rawvar"] = nla.ar.meta.fve_baseline()
    return out


def _summary(rows: list, sampling: dict) -> dict:
    import torch

    from nla_audit.metrics import summarize

    # best_of > 1 with pick "closest" is selected against the activations themselves: say so in the result
    out = {"n": len(rows), "best_of": sampling.get("best_of", 1), "pick": sampling.get("pick", "closest"), "failed_parse_rate": sum(not r.ok for r in rows) / len(rows)}
    for key in ("fve_nrm", "mse_nrm", "cos"):
        vals = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        s = summarize(torch.tensor(vals)) if vals else {"mean": None, "median": None}
        out[key] = {"mean": s["mean"], "median": s["median"]}
    return out


def run(args) -> int:
    from nla_audit.cli.explain import sampling
    from nla_audit.nla import NLA
    from nla_audit.progress import RateProgress

    samp = sampling(args)
    nla = NLA.load(args.av, args.ar, args.dtype, args.device, args.backend)
    with RateProgress("score", enabled=not args.json, unit="activations") as bar:
        res = score_corpus(nla, args.texts, args.positions_per_doc, args.min_position, args.max_docs, samp, bar.report)
    if args.json:
        print(json.dumps(res))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"NLA round trip on {args.texts} (n={res['n']})")
        for c in ("metric", "mean", "median"):
            t.add_column(c)
        for k in ("fve_nrm", "mse_nrm", "cos"):
            m = res[k]
            t.add_row(k, *(f"{m[x]:.4f}" if m[x] is not None else "n/a" for x in ("mean", "median")))
        t.add_row("failed parse rate", f"{res['failed_parse_rate']:.3f}", "")
        for kind, m in res["by_kind"].items():
            if len(res["by_kind"]) > 1:
                t.add_row(f"fve_nrm at {kind} positions (n={m['n']})",
                          *(f"{m[x]:.4f}" if m[x] is not None else "n/a" for x in ("mean", "median")))
        Console().print(t)
    return 0
