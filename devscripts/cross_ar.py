"""Every AV's explanations read by every AR, by position class: which half of an NLA moved a score, and which AR
(e.g. which WiSE-FT α, ``nla-audit train interpolate``) to pair with an AV.

Why: the chat NLA's phase 5 lost 0.037 fve_nrm on text against the shipped pair while both the AV (new
explanations) and the AR (mixed SFT) changed; reading each AV's greedy texts with each AR splits the loss.
Choosing an AR by these numbers must not use the test split: pass ``--split rl`` (documents no chat-NLA SFT
phase trained on; the shipped AR's GRPO did read fortunes rl-split documents, which favours it on text there,
so a choice made on rl is conservative about text). The sets are ``benchmarks/fve_by_class.py``'s, on the chosen
split; each AV's greedy texts are cached in ``--cache`` (keyed by the AV's files and the rows). Usage:

    python devscripts/cross_ar.py --split rl --av shipped AV --av p6 AV6 --ar shipped AR --ar a0.5 AR_A05 ...

fve_nrm uses the first AR's B_rv for every AR; "mixed" pools text, chat content and chat control; the paired
difference is against the first AV read by the first AR; "unclosed" is the share of an AV's explanations without
a closing tag (read as raw text). Prints a markdown table; ``--append`` adds it to
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MIXED = "mixed (text + chat)"


def _texts(av_dir: str, sets: dict, cache: Path, max_new_tokens: int, retries: int = 0) -> dict:
    """{set: greedy explanations} of ``av_dir`` for every set's rows, from the cache when there. With ``retries``
    the unclosed ones are resampled (``av.resample_unclosed``) from the plain greedy decode, which is cached too:
    the plain and the retried reading of one AV cost one greedy pass."""
    h = hashlib.sha256()
    for f in sorted(Path(av_dir).glob("*")):
        h.update(f.name.encode() + f.read_bytes())
    for name, (v, ids) in sorted(sets.items()):
        h.update(name.encode() + v.numpy().tobytes() + "|".join(ids).encode())
    plain = cache / f"texts-{h.hexdigest()[:16]}-{max_new_tokens}.json"
    path = plain.with_name(plain.stem + f"-r{retries}.json") if retries else plain
    if path.exists():
        return json.loads(path.read_text())["texts"]
    from nla_audit.av import ActivationVerbalizer, Explanation, resample_unclosed

    av = ActivationVerbalizer.from_pretrained(av_dir, "float32", None)
    if plain.exists():
        got = json.loads(plain.read_text())
        first = {name: [Explanation(text=t, raw=t, ok=ok, truncated=not ok, n_tokens=0)
                        for t, ok in zip(got["texts"][name], got["ok"][name])] for name in sets}
    else:
        first = {name: av.explain(v, max_new_tokens=max_new_tokens, temperature=0.0, batch_size=16)
                 for name, (v, _) in sets.items()}
        _save(plain, first)
    if not retries:
        return {name: [e.text for e in rows] for name, rows in first.items()}
    out = {name: resample_unclosed(av.explain, v, first[name], retries, 0.0, None, max_new_tokens=max_new_tokens,
                                   batch_size=16) for name, (v, _) in sets.items()}
    _save(path, out)
    return {name: [e.text for e in rows] for name, rows in out.items()}


def _save(path: Path, explained: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"texts": {n: [e.text for e in rows] for n, rows in explained.items()},
            "ok": {n: [bool(e.ok) for e in rows] for n, rows in explained.items()}}
    path.with_suffix(".tmp").write_text(json.dumps(body))
    path.with_suffix(".tmp").replace(path)


def unclosed_share(texts: list[str]) -> float:
    """Share of explanations the AV never closed: the parser keeps such raw output, opening tag included."""
    return sum("<explanation>" in t for t in texts) / max(len(texts), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--av", action="append", nargs=2, metavar=("NAME", "DIR"), required=True)
    ap.add_argument("--ar", action="append", nargs=2, metavar=("NAME", "DIR"), required=True)
    ap.add_argument("--split", default="test", help="documents to read: test (report) or rl (choose a setting)")
    ap.add_argument("--text-docs", type=int, default=40)
    ap.add_argument("--chat-docs", type=int, default=40)
    ap.add_argument("--positions", type=int, default=3)
    ap.add_argument("--task-items", type=int, default=0, help="eval-task rows too: the first N items of --task-split")
    ap.add_argument("--task-split", default="eval", help="eval (report) or train (choose a setting)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--retries", type=int, default=0, help="resample each unclosed explanation up to N times")
    ap.add_argument("--cache", default="runs/cross_ar_cache")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    import numpy as np
    from _common import append
    from fve_by_class import CLASSES, heldout_rows, task_rows

    from nla_audit.ar import ActivationReconstructor
    from nla_audit.evals._fve import bootstrap_ci
    from nla_audit.models import load_target
    from nla_audit.roundtrip import score_texts
    from nla_audit.sidecar import read_model_sidecar

    ref_ar = read_model_sidecar(args.ar[0][1], "ar")
    base, layer = ref_ar.fve_baseline(), int(ref_ar.layer_index)
    target = load_target(read_model_sidecar(args.av[0][1], "av").base_model, dtype="float32")
    sets = heldout_rows(target, layer, args.text_docs, args.chat_docs, args.positions, 512, args.split)
    tasks = ({f"task: {k}": v for k, v in task_rows(target, layer, args.task_items, args.task_split).items()}
             if args.task_items else {})
    texts = {name: {**_texts(d, sets, Path(args.cache), args.max_new_tokens, args.retries),
                    **(_texts(d, tasks, Path(args.cache), args.max_new_tokens, args.retries) if tasks else {})}
             for name, d in args.av}
    sets.update(tasks)
    fve: dict = {}
    for ar_name, ar_dir in args.ar:
        ar = ActivationReconstructor.from_pretrained(ar_dir, "float32", None)
        for av_name in texts:
            for set_name, (vecs, _) in sets.items():
                mse = score_texts(ar, texts[av_name][set_name], vecs, None, 32).mse.numpy()
                fve[(set_name, av_name, ar_name)] = 1 - mse / base
            fve[(MIXED, av_name, ar_name)] = np.concatenate([fve[(c, av_name, ar_name)] for c in CLASSES if c in sets])
    groups = {name: docs for name, (_, docs) in sets.items()}
    groups[MIXED] = [d for c in CLASSES if c in sets for d in sets[c][1]]
    ref = (args.av[0][0], args.ar[0][0])
    lines = [f"- split: {args.split} ({args.text_docs} fortunes documents, {args.chat_docs} ShareGPT conversations, "
             f"{args.positions} positions each; chats half at template tokens; tasks: first {args.task_items} "
             f"{args.task_split} items); greedy"
             f"{f' (each unclosed explanation resampled at T 0.7 up to {args.retries}×)' if args.retries else ''}, max_new_tokens "
             f"{args.max_new_tokens}; B_rv {base:.4f} (AR {args.ar[0][0]}) for every AR",
             "", f"| set | AV | AR | fve_nrm mean [95% CI] | − AV {ref[0]} + AR {ref[1]} (paired) | unclosed |",
             "|---|---|---|---|---|---|"]
    for set_name in [*sets, MIXED]:
        for av_name in texts:
            for ar_name, _ in args.ar:
                x = fve[(set_name, av_name, ar_name)]
                lo, hi = bootstrap_ci(x, groups=groups[set_name])
                paired = ""
                if (av_name, ar_name) != ref:
                    d = x - fve[(set_name, *ref)]
                    plo, phi = bootstrap_ci(d, groups=groups[set_name])
                    paired = f"{d.mean():+.3f} [{plo:+.3f}, {phi:+.3f}]"
                said = texts[av_name].get(set_name) or [t for c in CLASSES if c in sets for t in texts[av_name][c]]
                lines.append(f"| {set_name} | {av_name} | {ar_name} | {x.mean():.3f} [{lo:.3f}, {hi:.3f}] | {paired} "
                             f"| {unclosed_share(said):.2f} |")
    lines += ["", "- AVs: " + "; ".join(f"{n} = `{d}`" for n, d in args.av),
              "- ARs: " + "; ".join(f"{n} = `{d}`" for n, d in args.ar)]
    print("\n".join(lines), flush=True)
    if args.append:
        append(f"Cross-reading: each AV's explanations read by each AR ({args.split} split)", lines)


if __name__ == "__main__":
    main()
