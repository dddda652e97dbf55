"""Held-out round-trip quality of NLA checkpoints on the embedded model, with the shuffled-activation floor.

Held-out data: the ``test`` split of the default corpus (document-level split by sha256 of the doc id, seed 42,
the same rule ``nla-audit split`` / datagen used), which no training stage ever reads. For each checkpoint pair:
greedy explanations → AR → mse_nrm / cos / fve_nrm (mean, median, 95% CI by a bootstrap over documents), the failed-parse rate,
and the **floor**: the same AV fed *shuffled* activations, scored against the true ones. Also the AR reading the
offline teacher's explanation (what the AR can do with a perfect warm-start explanation), and with ``--best-of K``
K samples per activation under two selection rules: the AR-selected closest (AV + verification, not one
sample) and the blind consensus (minimum-Bayes-risk decoding). Training cost comes
from each checkpoint's sidecar; with several pairs, each later pair's paired per-row difference from the first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def table_row(results: dict, label: str, fve, mse, cos=None, fail: float | None = None, cost: str = "",
              docs: list | None = None) -> str:
    """One row of the held-out table (mean [95% CI], median, mse, cos, failed parse, training); also recorded
    in ``results`` for ``--json-out``. Empty cells where a reference has no such column. The CI resamples
    ``docs`` (each row's document) when given, since positions of one document are not independent."""
    from nla_audit.evals._fve import bootstrap_ci

    lo, hi = bootstrap_ci(fve.numpy(), groups=docs)
    results[label] = {"fve_mean": fve.mean().item(), "fve_median": fve.median().item(), "ci": [lo, hi],
                      "mse": mse.mean().item(), "failed": fail}
    cells = [f"{fve.mean():.3f} [{lo:.3f}, {hi:.3f}]", f"{fve.median():.3f}", f"{mse.mean():.3f}",
             "" if cos is None else f"{cos.mean():.3f}", "" if fail is None else f"{fail:.2f}", cost]
    return f"| {label} | " + " | ".join(cells) + " |"


def paired_differences(single: dict, docs: list | None = None) -> list[str]:
    """Each later pair minus the first, row by row on the same activations (a tighter test than two CIs)."""
    from nla_audit.evals._fve import bootstrap_ci

    names = list(single)
    out = []
    for name in names[1:]:
        d = single[name] - single[names[0]]
        lo, hi = bootstrap_ci(d, groups=docs)
        out.append(f"| {name} − {names[0]} (paired, same rows) | {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | | | | | |")
    return out


def best_of_rows(nla, v, args, results: dict, docs: list, single, name: str) -> list[str]:
    """K samples per activation, drawn once, scored under both ``best_of`` rules: ``closest`` (the AR as a
    verifier, selected against the activation) and ``consensus`` (minimum Bayes risk, blind to it), the
    latter also on the first 4, 8, … (below K) of the same K; beside the first sample of each group (one sample
    of the same draw, so the rules' gains are not mixed with draw-to-draw noise); each paired with the seed-0
    single-sample row."""
    import torch

    from nla_audit.evals._fve import bootstrap_ci
    from nla_audit.metrics import normalize
    from nla_audit.nla import best_sample, consensus_sample
    from nla_audit.roundtrip import score_reconstructions

    k, s, base = args.best_of, nla.ar.meta.mse_scale, nla.ar.meta.fve_baseline()
    expl, pred = nla.sample_explanations(v, k, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                         batch_size=args.batch_size, seed=1)
    scored, ok = score_reconstructions(pred, v.repeat_interleave(k, dim=0), s, base), torch.tensor([e.ok for e in expl])
    mse = scored.mse
    picks = {f"first of the {k} (one sample of the same draw)": torch.arange(len(v)) * k,
             f"best-of-{k} closest (AR-selected against the activation)": best_sample(mse, ok, k)}
    sub = [j for j in (4, 8, 16, 32) if j < k] + ([k] if k >= 3 else [])  # of 2, the mean is the midpoint: a tie
    for j in sub:  # the first j of each group of k: the same draws, fewer of them
        first = (torch.arange(len(v))[:, None] * k + torch.arange(j)).reshape(-1)
        local = consensus_sample(normalize(pred[first], s), ok[first], j)
        picks[f"consensus of {j} (blind to the activation)"] = first[local]
    out = []
    for rule, keep in picks.items():
        label = f"{name} · {rule}"
        kept = scored.take(keep)
        fve = kept.require_fve()
        out.append(table_row(results, label, fve, kept.mse, kept.cos, (~ok[keep]).float().mean().item(), docs=docs))
        results[label].update(examples=[expl[i].text for i in keep[:3].tolist()], fve_rows=fve.tolist())
        d = fve.numpy() - single
        lo, hi = bootstrap_ci(d, groups=docs)
        out.append(f"| {label} − {name} (paired, same rows) | {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | | | | | |")
    return out


def run_cost(av_dir: Path, ar_dir: Path) -> str:
    """What the benchmarked checkpoints' sidecars recorded (their step, not the run's latest logged step). An AV
    and AR from different runs (e.g. an AR trained on further) name both steps, and the total is their joint
    lineage (``training.run.lineage``), so the column never credits a mixed pair with the AV's cost alone."""
    from nla_audit.errors import NLAAuditError
    from nla_audit.sidecar import read_model_sidecar
    from nla_audit.training.run import lineage

    try:
        tv = read_model_sidecar(av_dir, "av").training or {}
        tr = read_model_sidecar(ar_dir, "ar").training or {}
    except NLAAuditError:  # no readable sidecar: no cost column
        return "n/a"
    stages, complete = lineage([tv, tr])
    total = sum(stages.values()) if complete and stages else None
    same = (tv.get("stages") or None) == (tr.get("stages") or None) and tv.get("step") == tr.get("step")
    out = f"{tv.get('loss_type', '?')} step {tv.get('step', '?')}"
    if not same:
        out = f"AV {out}, AR {tr.get('loss_type', '?')} step {tr.get('step', '?')}"
    elif tv.get("wall_time_s"):
        out += f", {tv['wall_time_s'] / 60:.0f} min this stage"
    return out + (f", {total / 3600:.2f} h in all stages" if total else "")


def lookup_row(paths: list[str], held, nla, results: dict) -> str:
    """The final-token lookup reference (``nla_audit.evals._fve.token_lookup_reconstruction``) as a table row."""
    import torch

    from nla_audit.evals._fve import token_lookup_reconstruction

    r = token_lookup_reconstruction(paths, held, nla.target.tokenizer, nla.ar.meta.mse_scale, nla.ar.meta.fve_baseline())
    label = f"final-token lookup (reference; {r.extra['coverage']:.0%} of held-out tokens seen in training)"
    return table_row(results, label, torch.from_numpy(r.fve), torch.from_numpy(r.mse), torch.from_numpy(r.cos),
                     docs=r.groups)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", action="append", nargs=3, metavar=("NAME", "AV", "AR"), required=True)
    ap.add_argument("--docs", type=int, default=120)
    ap.add_argument("--positions", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; the reference CLI samples at 0.7")
    ap.add_argument("--best-of", type=int, default=1, metavar="K",
                    help="also report each pair with K sampled explanations per activation, keeping the one the AR "
                         "reconstructs best and, blind to the activation, the consensus one (needs --temperature > 0)")
    ap.add_argument("--lookup-data", action="append", default=[], metavar="PARQUET",
                    help="training activation parquet(s) for the final-token lookup reference row (repeatable)")
    ap.add_argument("--batch-size", type=int, default=16,
                    help="activations per AV generate call; 64 runs faster than 16 on a CPU (fewer, larger matrix products), "
                         "but samples other explanations than the recorded runs (16) at the same seed")
    ap.add_argument("--retries", type=int, default=0, metavar="N",
                    help="resample an unclosed explanation up to N times (the product's rule, av.DEFAULT_RETRIES; "
                         "0 = one decode, as every entry before 2026-12-03 15:00 UTC was read)")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()
    if args.batch_size < 1 or args.retries < 0:
        ap.error(f"--batch-size {args.batch_size} / --retries {args.retries}: expected integers >= 1 / >= 0")
    if args.best_of > 1 and args.temperature <= 0:
        ap.error("--best-of needs --temperature > 0 (greedy samples are identical)")
    for path in args.lookup_data:  # checked before any generation
        if not Path(path).exists():
            ap.error(f"--lookup-data {path} does not exist (expected a training activation parquet)")

    from _common import record

    from nla_audit.evals._fve import heldout_from_corpus
    from nla_audit.nla import NLA
    from nla_audit.roundtrip import round_trip, score_texts
    from nla_audit.training.teacher import OfflineTeacher

    lines, results = [], {}
    nla0 = NLA.load(args.pair[0][1], args.pair[0][2], dtype="float32")
    held = heldout_from_corpus(nla0.target, nla0.layer, "default", args.docs, args.positions)
    v, cols = held.vectors, {"doc_id": held.doc_ids, "detokenized_text_truncated": held.texts}
    docs = list(held.doc_ids)  # every CI below resamples documents, not rows
    n = len(v)
    lines.append(f"- held-out: {n} activations from {len(set(cols['doc_id']))} test-split documents of the default "
                 f"corpus (never used in training), layer {nla0.layer}, "
                 f"{'greedy' if args.temperature == 0 else f'temperature {args.temperature}'}, max_new_tokens {args.max_new_tokens}"
                 + (f", unclosed explanations resampled up to {args.retries} times" if args.retries else ""))
    lines.append("")
    lines.append("| checkpoint | fve_nrm mean [95% CI] | fve_nrm median | mse_nrm | cos | failed parse | training |")
    lines.append("|---|---|---|---|---|---|---|")
    # the offline teacher's explanation of each position: the same for every pair, so written once
    tok = nla0.target.tokenizer
    ids = [tok(t, add_special_tokens=True)["input_ids"] for t in cols["detokenized_text_truncated"]]
    teacher_texts = [e[0] for e in OfflineTeacher(nla0.target).explain_documents([(i, [len(i) - 1]) for i in ids])]
    single = {}  # per-row single-sample fve of each pair, on the same rows: for paired differences
    for name, av, ar in args.pair:
        nla = NLA.load(av, ar, dtype="float32")
        nla._target = nla0.target
        base = nla.ar.meta.fve_baseline()
        # the floor: every row reads another row's activation (the derangement with seed 0), scored against its own
        for label, shuffled in ((name, False), (f"{name} · floor (shuffled activations)", True)):
            rt = round_trip(nla.av, nla.ar, v, base, shuffled=shuffled, seed=0, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, temperature=args.temperature, retries=args.retries)
            fve = rt.require_fve()
            lines.append(table_row(results, label, fve, rt.mse, rt.cos, rt.failed_rate,
                                   run_cost(Path(av), Path(ar)) if label == name else "", docs))
            results[label].update(examples=rt.texts[:3], fve_rows=fve.tolist())
            if label == name:
                single[name] = fve.numpy()
        if args.best_of > 1:
            lines += best_of_rows(nla, v, args, results, docs, single[name], name)
        # what the AR does with the offline teacher's explanation of the same position (text-side reference)
        t = score_texts(nla.ar, teacher_texts, v, base)
        lines.append(table_row(results, f"{name} · AR on teacher explanations (reference)", t.require_fve(), t.mse,
                               docs=docs))
    lines += paired_differences(single, docs)
    if args.lookup_data:
        lines.append(lookup_row(args.lookup_data, held, nla0, results))
    lines.append("")
    if args.best_of > 1:
        lines.append(f"- best-of-{args.best_of}: {args.best_of} explanations sampled once per activation (seed 1, a draw "
                     "apart from the single-sample row's seed 0), scored under two rules. *closest* keeps the sample "
                     "whose AR reconstruction is closest to the activation (`nla-audit explain --best-of K`): chosen "
                     "against the activation itself, it scores the AV plus AR verification, not the AV's fidelity. "
                     "*consensus of j* keeps, of the first j samples, the one whose reconstruction is closest to their "
                     "mean reconstruction (`--best-of K --pick consensus`, minimum Bayes risk): it never sees the "
                     "activation, so it is a decoding rule scored like any other, at j times the generation cost. "
                     "Best-of rows recorded before 2026-11-23 11:30 UTC drew their K samples with seed 0 at batch 16.")
    if args.lookup_data:
        lines.append("- final-token lookup: each held-out activation predicted by the mean direction of the training "
                     "activations (" + ", ".join(f"`{p}`" for p in args.lookup_data) + ") at the same token (the overall "
                     "mean direction for unseen tokens): what naming only the current token could carry.")
    lines.append(f"- 95% CIs: percentile bootstrap over the {len(set(docs))} documents (all positions of a drawn document "
                 "together), for rows and paired differences alike.")
    lines.append(f"- fve_nrm denominator B_rv = {nla0.ar.meta.fve_baseline():.4f} (training-set variance of the normalised "
                 "vectors, stored in the AR sidecar). The teacher is the offline proxy, not Claude.")
    record("Held-out fve_nrm of NLA checkpoints", lines, args.append)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
