"""What does the NLA say at the assistant header of a held-out chat: the right turn, and the user's real request?

Why: the header is where an auditor reads a chat NLA (the model has read the whole prompt and written nothing),
and the chat NLA's explanations there take the offline teacher's form: "… before the assistant's message k. …
User asked: “…”. …". fve_nrm says how much of the activation an explanation carries, not which of its claims
are true. This script checks two claims against the transcript, on test-split ShareGPT conversations (split by
conversation, seed 42; each cut after one of its first three user turns, seeded by the conversation id):

* **turn**: the assistant message number the explanation names equals the true one;
* **request**: the words of the quoted request (content words: four letters or more, stopwords out) that occur
  in the true user message, as a share of the quote's words ("precision"), and whether any does ("hit").

Floors, on the same rows: the quote scored against another conversation's request (what generic words like
"write" or "code" share by chance), and the AV fed another conversation's activation (a derangement), scored
against the row's own transcript. Greedy, with the product's retries. CIs: percentile bootstrap over
conversations (one row each). A keyword grader: a proxy for a reader who checks the quote.

    python benchmarks/header_quotes.py [--convs 40] [--av AV --ar AR] [--append]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STOP = frozenset("""that this with from have what your about would there their which will when where could should
them then than they been were into more some such only also just like make does how can you the and for are
please""".split())
TURN = re.compile(r"before the assistant's message (\d+)")
REQUEST = re.compile(r"User asked: “(.*?)”")


def content_words(text: str) -> set[str]:
    """Lower-case words of four letters or more, stopwords out: what a quote can share with a request."""
    return {w for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in STOP}


def quote_scores(explanation: str, request: str) -> tuple[float | None, bool | None]:
    """(precision, hit) of the explanation's quoted request against ``request``; (None, None) with no quote."""
    m = REQUEST.search(explanation)
    if m is None:
        return None, None
    q = content_words(m.group(1))
    if not q:
        return None, None
    shared = q & content_words(request)
    return len(shared) / len(q), bool(shared)


def named_turn(explanation: str) -> int | None:
    m = TURN.search(explanation)
    return int(m.group(1)) if m else None


def cut_conversations(tok, n: int, max_length: int):
    """Yield (conversation id, messages up to a user turn, that turn's text, true assistant message number)."""
    from nla_audit.chat import render_chat
    from nla_audit.corpus import iter_documents
    from nla_audit.split import DEFAULT_FRACTIONS, assign_split

    k = 0
    for doc in iter_documents("sharegpt"):
        if k >= n:
            return
        if not doc.messages or assign_split(doc.id, dict(DEFAULT_FRACTIONS), 42) != "test":
            continue
        users = [i for i, m in enumerate(doc.messages) if m["role"] == "user" and m["content"].strip()][:3]
        if not users:
            continue
        i = random.Random(doc.id).choice(users)
        msgs = [dict(m) for m in doc.messages[: i + 1]]
        if len(tok(render_chat(tok, msgs), add_special_tokens=False)["input_ids"]) > max_length:
            continue
        k += 1
        yield doc.id, msgs, msgs[i]["content"], 1 + sum(m["role"] == "assistant" for m in msgs)


def ci(x) -> str:
    import numpy as np

    from nla_audit.evals._fve import bootstrap_ci

    x = np.asarray(x, dtype=float)
    lo, hi = bootstrap_ci(x)
    return f"{x.mean():.2f} [{lo:.2f}, {hi:.2f}]"


def table(rows: dict[str, list[tuple[float | None, bool | None, bool | None]]]) -> list[str]:
    """One line per reading: turn right, quote present, precision and hit (rows without a quote count 0)."""
    out = ["| reading | turn named right | request quoted | quoted words in the request (precision) | "
           "shares a word (hit) |", "|---|---|---|---|---|"]
    for label, r in rows.items():
        turn = [t is True for _, _, t in r]
        quoted = [p is not None for p, _, _ in r]
        prec = [p or 0.0 for p, _, _ in r]
        hit = [bool(h) for _, h, _ in r]
        out.append(f"| {label} | {ci(turn)} | {ci(quoted)} | {ci(prec)} | {ci(hit)} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convs", type=int, default=40, help="held-out conversations (one header each)")
    ap.add_argument("--av", default=None, help="AV folder (default: the shipped NLA's)")
    ap.add_argument("--ar", default=None, help="AR folder (default: the shipped NLA's)")
    ap.add_argument("--max-length", type=int, default=512, help="skip conversations whose cut is longer (tokens)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()
    if args.convs < 2:
        ap.error(f"--convs {args.convs}: expected at least 2 (the floors pair each row with another)")

    import torch
    from _common import record

    from nla_audit.chat import render_chat
    from nla_audit.extract import block_outputs
    from nla_audit.nla import NLA
    from nla_audit.roundtrip import floor_order

    nla = NLA.load(args.av, args.ar, dtype="float32")
    tok = nla.target.tokenizer
    convs = list(cut_conversations(tok, args.convs, args.max_length))
    vecs = []
    for _, msgs, _, _ in convs:
        ids = tok(render_chat(tok, msgs), add_special_tokens=False)["input_ids"]
        vecs.append(block_outputs(nla.target.model, nla.layer, [ids], 0)[0, -1])
    v = torch.stack(vecs)
    order = floor_order(len(v), 0).tolist()
    real = nla.explain_vectors(v, max_new_tokens=args.max_new_tokens)
    shuffled = nla.explain_vectors(v[order], max_new_tokens=args.max_new_tokens)
    requests = [c[2] for c in convs]
    turns = [c[3] for c in convs]

    def read(expls, against):
        return [(*quote_scores(e.explanation, against[j]), named_turn(e.explanation) == turns[j])
                for j, e in enumerate(expls)]

    rows = {"NLA at the header's last token": read(real, requests),
            "floor: the same quotes against another conversation's request":
                [(*quote_scores(e.explanation, requests[order[j]]), named_turn(e.explanation) == turns[order[j]])
                 for j, e in enumerate(real)],
            "floor: the AV fed another conversation's activation": read(shuffled, requests)}
    lines = [f"- held-out: {len(convs)} test-split ShareGPT conversations (split by conversation, seed 42), each cut "
             f"after one of its first three user turns and rendered with the chat template and its generation prompt "
             f"(≤ {args.max_length} tokens); explained: the header's last token (the line break before the reply); "
             f"true assistant message numbers 1–{max(turns)} (mean {sum(turns) / len(turns):.1f}); greedy with the "
             f"product's retries, max_new_tokens {args.max_new_tokens}; NLA: `{args.av or 'shipped'}` + "
             f"`{args.ar or 'shipped'}`; mean fve_nrm of the explanations {sum(r.fve_nrm for r in real) / len(real):.3f}",
             "", *table(rows), "",
             "- turn: the explanation's \"before the assistant's message k\" equals the true k; request: the content "
             "words (≥ 4 letters, stopwords out) of its \"User asked: “…”\" quote found in the true user message, as a "
             "share of the quote's (0 when it quotes nothing), and whether any is. A keyword grader (a proxy). 95% CIs: "
             "percentile bootstrap over conversations."]
    for j in range(min(3, len(convs))):
        lines.append(f"- example: request “{' '.join(requests[j].split()[:12])}…” → "
                     f"“{real[j].explanation[:220].replace(chr(10), ' ')}…”")
    record("Assistant-header claims checked against the transcript", lines, args.append)


if __name__ == "__main__":
    main()
