"""``nla-audit explain``: explain activation vectors, a text, or a chat transcript with an NLA."""

from __future__ import annotations

import json
import sys


def add_nla_args(p) -> None:
    p.add_argument("--av", default=None, help="AV checkpoint folder or hub id (default: the shipped NLA)")
    p.add_argument("--ar", default=None, help="AR checkpoint folder or hub id (default: the shipped NLA)")
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--best-of", type=int, default=1, metavar="K",
                   help="sample K explanations per activation (needs --temperature > 0) and keep one, by --pick")
    p.add_argument("--pick", default="closest", choices=["closest", "consensus"],
                   help="with --best-of: closest = the sample the AR reconstructs best (scored against the activation); "
                        "consensus = the sample nearest the mean reconstruction (blind to the activation)")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="resample an explanation the AV left unclosed (e.g. a greedy loop) up to N times at "
                        "temperature 0.7 (or --temperature), seeded; the first closed one is kept (default: "
                        "nla_audit.av.DEFAULT_RETRIES)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"],
                   help="AV generation backend (vllm: GPU only, prompt embeddings)")


def register(sub) -> None:
    p = sub.add_parser("explain", help="explain activations (--vectors), a text (--text) or a transcript (--transcript)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vectors", help="activation parquet (activation_vector column)")
    src.add_argument("--transcript", help="JSON chat transcript: a list of {role, content} messages")
    src.add_argument("--text", help="a raw text string")
    p.add_argument("--positions", default="all", help="all | last | i,j,... | a:b (negative from the end); for transcripts, last is the last token of the "
                        "last message, and header (the template tokens before the last assistant message), opening "
                        "(header and the reply's first tokens) and control (every template token) select template "
                        "tokens")
    p.add_argument("--limit", type=int, default=None, help="explain at most N rows of --vectors")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.add_argument("--html", default=None, help="write an HTML view of the transcript/text here")
    add_nla_args(p)
    p.set_defaults(func=run)


def sampling(args) -> dict:
    from nla_audit.av import DEFAULT_RETRIES
    from nla_audit.errors import InputError
    from nla_audit.nla import check_best_of

    if args.retries is None:
        args.retries = DEFAULT_RETRIES
    if args.max_new_tokens < 1 or args.batch_size < 1 or args.temperature < 0 or args.retries < 0:
        raise InputError("--max-new-tokens and --batch-size must be >= 1, --temperature and --retries >= 0")
    check_best_of(args.best_of, args.temperature, args.pick)  # before any model loads: fail fast
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "batch_size": args.batch_size,
            "seed": args.seed, "best_of": args.best_of, "pick": args.pick, "retries": args.retries}


def _document(args):
    from nla_audit.corpus import Document, iter_documents
    from nla_audit.errors import InputError

    if args.text is not None:
        if not args.text.strip():
            raise InputError("--text is empty", expected="a non-empty string")
        return Document(id="text", text=args.text)
    docs = list(iter_documents(args.transcript))
    if len(docs) != 1 or not (docs[0].messages or (docs[0].text or "").strip()):
        raise InputError(f"{args.transcript} holds {len(docs)} documents or an empty one",
                         expected="one chat transcript (a JSON list of {role, content} messages)")
    return docs[0]


def document_tokens(nla, doc) -> list[str]:
    from nla_audit.corpus import tokenize_document
    from nla_audit.nla import MAX_DOCUMENT_TOKENS

    tok = nla.target.tokenizer
    return [tok.decode([i]) for i in tokenize_document(doc, tok, MAX_DOCUMENT_TOKENS)]


def vector_rows(path: str, limit: int | None) -> tuple:
    """The vectors of an activation parquet and, per row, (position in its document, the text's last ~40
    characters up to the activation's token, document id) when the file has the reference provenance columns;
    otherwise (row index, None, None)."""
    import pyarrow.parquet as pq

    from nla_audit.vectors import read_vectors

    try:
        names = set(pq.read_schema(path).names)
    except Exception:  # missing or not parquet: read_vectors below says so in one line
        names = set()
    cols = [c for c in ("doc_id", "n_raw_tokens", "detokenized_text_truncated") if c in names]
    vecs, got = read_vectors(path, cols)
    if limit:
        vecs = vecs[:limit]
    n = len(vecs)
    if len(cols) < 3:
        return vecs, [(i, None, None) for i in range(n)]
    return vecs, [(int(k) - 1, "…" + t[-40:], d) for k, t, d in
                  zip(got["n_raw_tokens"][:n], got["detokenized_text_truncated"][:n], got["doc_id"][:n])]


def check_positions_in_range(args, doc) -> None:
    """Positions against the document's token count, with the tokenizer alone (a second to load, not the ~20 s
    of the models), so a position out of range is reported before the wait."""
    from nla_audit.extract import prepare_document
    from nla_audit.models import load_tokenizer, resolve_model_path
    from nla_audit.nla import MAX_DOCUMENT_TOKENS, resolve_positions

    meta = av_sidecar(args)
    tok = load_tokenizer(resolve_model_path(meta.base_model))
    ids, layout = prepare_document(doc, tok, MAX_DOCUMENT_TOKENS)
    resolve_positions(args.positions, len(ids), layout)


def check_vector_width(args, vecs) -> None:
    """The vectors' width against the AV's sidecar (a file read, not the ~20 s model load), so a parquet from
    another model is one line before the wait."""
    from nla_audit.av import validate_vectors

    validate_vectors(vecs, av_sidecar(args).d_model)


def av_sidecar(args):
    """The AV's sidecar for the early checks: a local folder read as is, a hub id resolved (downloaded once, into
    the cache NLA.load then reuses) like NLA.load does."""
    from nla_audit.checkpoint import resolve_checkpoint
    from nla_audit.nla import default_nla_paths
    from nla_audit.sidecar import read_model_sidecar

    return read_model_sidecar(resolve_checkpoint(args.av or default_nla_paths()[0]), "av")


def announce_default_system(nla, doc) -> None:
    """Say so when the chat template inserted a system prompt the transcript does not have: its tokens are read
    and explained like the rest, and a reader should know where they came from."""
    if doc.messages is None:
        return
    from nla_audit.chat_layout import chat_layout
    from nla_audit.nla import MAX_DOCUMENT_TOKENS

    first = chat_layout(nla.target.tokenizer, doc.messages, MAX_DOCUMENT_TOKENS).messages[0]
    if first.get("implicit"):
        print(f"note: the chat template inserted its default system prompt ({first['content'][:60]!r}); "
              "its tokens are part of the transcript", file=sys.stderr)


def _bar(args):
    """A progress bar with total and ETA over the AV's batches (off with --json and when stderr is no TTY)."""
    from nla_audit.progress import RateProgress

    return RateProgress("explain", enabled=not args.json, unit="activations")


def run(args) -> int:
    from nla_audit.atomic import atomic_write_text, check_writable
    from nla_audit.nla import NLA
    from nla_audit.render import print_table, to_html

    if args.html:
        check_writable(args.html)
    samp = sampling(args)
    if args.vectors:
        vecs, prov = vector_rows(args.vectors, args.limit)
        check_vector_width(args, vecs)
        nla = NLA.load(args.av, args.ar, args.dtype, args.device, args.backend)
        with _bar(args) as bar:
            rows = nla.explain_vectors(vecs, progress=bar.report, **samp)
        rows = [r.__class__(**{**r.to_dict(), "position": p, "token": t}) for r, (p, t, _d) in zip(rows, prov)]
        title = f"{args.vectors} ({len(rows)} vectors)"
    else:
        from nla_audit.nla import check_position_spec

        doc = _document(args)
        check_position_spec(args.positions, doc.messages is not None)  # before the model load
        check_positions_in_range(args, doc)
        nla = NLA.load(args.av, args.ar, args.dtype, args.device, args.backend)
        announce_default_system(nla, doc)
        with _bar(args) as bar:
            rows = nla.explain_document(doc, args.positions, progress=bar.report, **samp)
        title = f"{args.transcript or 'text'} · layer {nla.layer}"
        tokens = document_tokens(nla, doc)
    if args.json:
        docs = [d for _p, _t, d in prov] if args.vectors else [None] * len(rows)
        for r, doc in zip(rows, docs):
            out = {k: r.to_dict()[k] for k in ("position", "token", "explanation", "mse_nrm", "cos",
                                               "fve_nrm", "norm", "ok", "warning", "best_of", "pick", "retries")}
            print(json.dumps({**({"doc_id": doc} if args.vectors else {}), **out}))
    else:
        print_table(rows, title)
    if args.html:
        atomic_write_text(args.html, to_html(rows, title, tokens if not args.vectors else None))
        print(f"wrote {args.html}", file=sys.stderr)
    if any(r.warning for r in rows):
        print(f"warning: {sum(1 for r in rows if r.warning)} explanation(s) look like an injection failure", file=sys.stderr)
    return 0
