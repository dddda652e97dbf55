"""Held-out round-trip quality by position class: text, chat content, chat control (template) tokens.

Why: an auditor reads chat transcripts, and the signal sits at template tokens such as the assistant header;
a single held-out mean over fortunes hid that the first shipped NLA scored below the mean there. Classes:

* **text**: test-split documents of the default corpus (fortunes), positions >= 10;
* **chat content** / **chat control**: test-split ShareGPT conversations (split by conversation, seed 42, the
  datagen rule), rendered with the target's chat template, positions drawn by the extraction's chat rule
  (half at template tokens here, so both classes get enough rows).

Per NLA pair and class: greedy explanation → AR → fve_nrm, mean and median with 95% CIs resampling documents;
the floor (the same AV fed another row's activation of the same class: a derangement) and, for every pair after
the first, the paired per-row difference from the first. All pairs are scored with the first pair's AR
baseline (B_rv), so the numbers compare. Also fve_nrm at each eval task's explained token, and a
template-collapse check over each pair's explanations: distinct word bigrams / all bigrams, and the share of
explanations with a near-duplicate (word-trigram Jaccard >= 0.8 with another explanation of the same class).

Each pair's rows are cached in ``--cache`` (keyed by the checkpoint files and the held-out rows), so scoring a new
NLA against the shipped one does not redo the shipped one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = ("text", "chat content", "chat control")
TASKS = ("classification", "suffix_prediction", "user_modeling", "cot_hints")


def heldout_documents(tok, text_docs: int, chat_docs: int, positions: int, max_length: int, split: str = "test"):
    """Yield (doc id, token ids, [(position, class)]) for ``split`` documents (test to report, rl to choose a
    setting): ``text_docs`` fortunes documents and ``chat_docs`` ShareGPT conversations, positions drawn by the
    extraction's own rules (half of a chat's at template tokens)."""
    from nla_audit.corpus import iter_documents
    from nla_audit.extract import prepare_document, sample_chat_positions, sample_positions, special_token_ids
    from nla_audit.split import DEFAULT_FRACTIONS, assign_split

    specials = special_token_ids(tok)
    for corpus, n_docs in (("default", text_docs), ("sharegpt", chat_docs)):
        k = 0
        for doc in iter_documents(corpus):
            if k >= n_docs:
                break
            if assign_split(doc.id, dict(DEFAULT_FRACTIONS), 42) != split:
                continue
            ids, layout = prepare_document(doc, tok, max_length)
            if layout is None:
                pos = sample_positions(ids, specials, 10, positions, 7, doc.id)
            else:
                pos = sample_chat_positions(layout, positions, 0.5, 7, doc.id)
            if not pos:
                continue
            k += 1
            yield doc.id, ids, [(p, "text" if layout is None else ("chat control" if layout.control[p] else
                                                                    "chat content")) for p in pos]


def heldout_rows(target, layer: int, text_docs: int, chat_docs: int, positions: int, max_length: int,
                 split: str = "test"):
    """{class: (vectors, doc ids)} from ``split`` documents, extracted now with the extraction's own rules."""
    import torch

    from nla_audit.extract import block_outputs

    tok = target.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows: dict[str, tuple[list, list]] = {c: ([], []) for c in CLASSES}
    for doc_id, ids, picks in heldout_documents(tok, text_docs, chat_docs, positions, max_length, split):
        hidden = block_outputs(target.model, layer, [ids[: max(p for p, _ in picks) + 1]], pad)[0]
        for p, cls in picks:
            rows[cls][0].append(hidden[p])
            rows[cls][1].append(doc_id)
    return {c: (torch.stack(v), d) for c, (v, d) in rows.items() if v}


def task_rows(target, layer: int, n: int, split: str = "eval"):
    """{task: (vectors, item ids)}: each eval task's explained activation for its first ``n`` items of ``split``
    (eval to report; train to choose a setting)."""
    import importlib

    import torch

    from nla_audit.evals._items import resolve_position, select
    from nla_audit.extract import block_outputs

    out = {}
    for name in TASKS:
        spec = importlib.import_module(f"nla_audit.evals.{name}.task").SPEC
        items = select(spec.load(0).items, split, None)[:n]
        vecs, ids = [], []
        for it in items:
            tokens, pos, _ = resolve_position(it, target.tokenizer)
            vecs.append(block_outputs(target.model, layer, [tokens[: pos + 1]], 0)[0, pos])
            ids.append(it["id"])
        out[name] = (torch.stack(vecs), ids)
    return out


def _key(av: str, ar: str, sets: dict, max_new_tokens: int, retries: int = 0) -> str:
    h = hashlib.sha256()
    for folder in (av, ar):
        for f in sorted(Path(folder).glob("*")):
            h.update(f.name.encode() + f.read_bytes())
    for name, (v, ids) in sorted(sets.items()):
        h.update(name.encode() + v.numpy().tobytes() + "|".join(ids).encode())
    h.update(str(max_new_tokens).encode() + (f"|retries {retries}".encode() if retries else b""))
    return h.hexdigest()[:16]


def score_pair(av: str, ar: str, sets: dict, args, target) -> dict:
    """{set name: {"fve": [...], "floor": [...], "texts": [...]}} with raw mse; fve is made later on one baseline."""
    from nla_audit.nla import NLA
    from nla_audit.roundtrip import round_trip

    cache = Path(args.cache) / f"{_key(av, ar, sets, args.max_new_tokens, args.retries)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    nla = NLA.load(av, ar, dtype="float32")
    nla._target = target
    out = {}
    small = [name for name, (v, _) in sets.items() if len(v) < 2]
    if small:  # the floor pairs each row with another: refuse before any set is scored, not halfway
        raise SystemExit(f"fve_by_class: set(s) {small} have fewer than 2 rows; a floor needs 2 or more "
                         "(raise --text-docs/--chat-docs/--task-items)")
    for name, (v, _) in sets.items():
        res = {}
        for label, shuffled in (("mse", False), ("floor_mse", True)):  # floor: the derangement with seed 0
            rt = round_trip(nla.av, nla.ar, v, shuffled=shuffled, seed=0, max_new_tokens=args.max_new_tokens,
                            batch_size=16, temperature=0.0, retries=args.retries)
            res[label] = rt.mse.tolist()
            if label == "mse":
                res["texts"] = rt.texts
                res["failed"] = rt.failed_rate
        out[name] = res
        print(f"[fve_by_class] {av}: {name} done", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(cache)
    return out


def retry_note(retries: int) -> str:
    """How the decode rule reads in a BENCHMARKS line: nothing for plain greedy."""
    return f" (each unclosed explanation resampled at T 0.7 up to {retries}×)" if retries else ""


def collapse(texts: list[str]) -> tuple[float, float]:
    """(distinct word bigrams / bigrams, share of explanations with a near-duplicate among the others)."""
    words = [t.split() for t in texts]
    bigrams = [tuple(w[i:i + 2]) for w in words for i in range(len(w) - 1)]
    distinct = len(set(bigrams)) / max(1, len(bigrams))
    tri = [{tuple(w[i:i + 3]) for i in range(len(w) - 2)} for w in words]
    dup = 0
    for i, a in enumerate(tri):
        if any(j != i and a and b and len(a & b) / len(a | b) >= 0.8 for j, b in enumerate(tri)):
            dup += 1
    return distinct, dup / max(1, len(texts))


def with_mixed(sets: dict, scored: dict) -> dict:
    """The sets plus "mixed held-out": text, chat content and chat control pooled (the shipping criterion),
    its rows appended to every pair's scores."""
    parts = [c for c in CLASSES if c in sets]
    out = {k: v for k, v in sets.items() if k in parts}
    out["mixed held-out (all three)"] = (None, [d for c in parts for d in sets[c][1]])
    for res in scored.values():
        res["mixed held-out (all three)"] = {
            "mse": [x for c in parts for x in res[c]["mse"]], "floor_mse": [x for c in parts for x in res[c]["floor_mse"]],
            "texts": [x for c in parts for x in res[c]["texts"]],
            "failed": sum(res[c]["failed"] * len(res[c]["mse"]) for c in parts) / sum(len(res[c]["mse"]) for c in parts)}
    out.update({k: v for k, v in sets.items() if k not in parts})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", action="append", nargs=3, metavar=("NAME", "AV", "AR"), required=True,
                    help="an NLA pair; the first is the reference of the paired differences and of B_rv")
    ap.add_argument("--text-docs", type=int, default=40)
    ap.add_argument("--chat-docs", type=int, default=40)
    ap.add_argument("--positions", type=int, default=4, help="positions per document")
    ap.add_argument("--task-items", type=int, default=16, help="eval items per task for the task-position rows")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--retries", type=int, default=0, help="resample each unclosed explanation up to N times "
                    "(av.resample_unclosed; every pair and floor alike)")
    ap.add_argument("--cache", default="runs/fve_by_class_cache")
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md")
    args = ap.parse_args()
    for name, av, ar in args.pair:
        for folder in (av, ar):
            if not (Path(folder) / "nla_meta.yaml").exists():
                ap.error(f"--pair {name}: {folder} is not an NLA checkpoint folder (no nla_meta.yaml)")

    import numpy as np
    from _common import append

    from nla_audit.evals._fve import bootstrap_ci
    from nla_audit.models import load_target
    from nla_audit.sidecar import read_model_sidecar

    ref_ar = read_model_sidecar(args.pair[0][2], "ar")
    base = ref_ar.fve_baseline()
    layer = int(ref_ar.layer_index)
    target = load_target(read_model_sidecar(args.pair[0][1], "av").base_model, dtype="float32")
    sets = heldout_rows(target, layer, args.text_docs, args.chat_docs, args.positions, args.max_length)
    sets.update({f"task: {k}": v for k, v in task_rows(target, layer, args.task_items).items()})
    scored = {name: score_pair(av, ar, sets, args, target) for name, av, ar in args.pair}

    ref = args.pair[0][0]
    lines = [f"- held-out: test-split documents (split by document, ShareGPT by conversation, seed 42): "
             f"{args.text_docs} fortunes documents, {args.chat_docs} ShareGPT conversations (chat template, cut to "
             f"{args.max_length} tokens at a turn boundary), {args.positions} positions each (chats: half at template "
             f"tokens); eval tasks: the explained token of the first {args.task_items} eval items; greedy{retry_note(args.retries)}, "
             f"max_new_tokens {args.max_new_tokens}; fve_nrm with B_rv = {base:.4f} (the first pair's AR) for every pair",
             "", "| set | rows (docs) | NLA | fve_nrm mean [95% CI] | median | floor (shuffled) | − " + ref +
             " (paired) | failed parse | distinct bigrams | near-duplicates |", "|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for name_set, (_, docs) in with_mixed(sets, scored).items():
        for name, _, _ in args.pair:
            r = scored[name][name_set]
            fve = 1 - np.array(r["mse"]) / base
            floor = 1 - np.array(r["floor_mse"]) / base
            lo, hi = bootstrap_ci(fve, groups=docs)
            flo, fhi = bootstrap_ci(floor, groups=docs)
            paired = ""
            if name != ref:
                d = fve - (1 - np.array(scored[ref][name_set]["mse"]) / base)
                plo, phi = bootstrap_ci(d, groups=docs)
                paired = f"{d.mean():+.3f} [{plo:+.3f}, {phi:+.3f}]"
            distinct, dup = collapse(r["texts"])
            results.setdefault(name_set, {})[name] = {"mean": float(fve.mean()), "ci": [lo, hi],
                                                      "median": float(np.median(fve)), "floor": float(floor.mean())}
            lines.append(f"| {name_set} | {len(fve)} ({len(set(docs))}) | {name} | {fve.mean():.3f} [{lo:.3f}, {hi:.3f}] "
                         f"| {np.median(fve):.3f} | {floor.mean():.3f} [{flo:.3f}, {fhi:.3f}] | {paired} | "
                         f"{r['failed']:.2f} | {distinct:.2f} | {dup:.2f} |")
    lines += ["", "- pairs: " + "; ".join(f"{n} = `{av}` + `{ar}`" for n, av, ar in args.pair),
              "- floor: each row's AV input is another row's activation of the same set (a seeded derangement), "
              "scored against the row's own activation. CIs: percentile bootstrap over documents (items for tasks).",
              "- collapse check: distinct word bigrams over all bigrams of the set's explanations (lower = more "
              "templated), and the share of explanations whose word trigrams overlap another's at Jaccard >= 0.8."]
    print("\n".join(lines))
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    (Path(args.cache) / "last_results.json").write_text(json.dumps(results, indent=1))
    if args.append:
        append("Held-out fve_nrm by position class: text, chat content, chat control (chat NLA)", lines)


if __name__ == "__main__":
    main()
