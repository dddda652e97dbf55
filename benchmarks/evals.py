"""The five NLA evals for one or more NLA checkpoints, with floors, ceilings and readers.

For every task: each ``--pair NAME AV AR`` checkpoint explained by its AV (``nla``) and fed shuffled activations
(``nla-shuffled``, the floor); once per site, the linear probe on the raw activation (``probe``, the ceiling for
linearly available information, fit on the task's train items) and the grader reading the raw text context
(``text``). Scores come with 95% intervals (Wilson for accuracies, bootstrap for gaps) in one DataFrame
(task × explainer × checkpoint × grader), printed as a markdown table (appended to BENCHMARKS.md with
``--append``), saved as CSV, and plotted against each checkpoint's fve_nrm on the task's own activations (PNG).

Without ``--pair`` only the references run (probe, text) at ``--model``/``--layer`` (default: the embedded
SmolLM2-135M-Instruct, layer 20), which is what a fresh machine can measure before an NLA ships.

    python benchmarks/evals.py --limit 40                                   # references only
    python benchmarks/evals.py --pair sft runs/x/av runs/x/ar --pair rl runs/y/av runs/y/ar --limit 60 --append
    python -m nla_audit.evals.datasets                                     # regenerate the shipped JSON
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASKS = "classification,suffix_prediction,user_modeling,cot_hints"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", action="append", nargs=3, metavar=("NAME", "AV", "AR"), default=[])
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help="comma list (sandbagging needs an implanted target)")
    ap.add_argument("--references", default="probe,text", help="explainers run once per site")
    ap.add_argument("--no-floor", action="store_true", help="skip nla-shuffled")
    ap.add_argument("--limit", type=int, default=None, help="eval items per group")
    ap.add_argument("--probe-train", type=int, default=None, help="train items per group for the probe")
    ap.add_argument("--grader", default="embed", choices=["embed", "model", "both"])
    ap.add_argument("--grader-model", default="anthropic/claude-haiku-4-5")
    ap.add_argument("--model", default=None)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=150)
    ap.add_argument("--log-dir", default=str(ROOT / "logs" / "evals-bench"))
    ap.add_argument("--png", default=str(ROOT / "benchmarks" / "evals_vs_fve.png"))
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "evals_results.csv"))
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    ap.add_argument("--write-data", action="store_true", help=argparse.SUPPRESS)  # moved: nla_audit.evals.datasets
    ap.add_argument("--fve", action="append", default=[], metavar="NAME=VALUE",
                    help="x position of checkpoint NAME in the plot (e.g. its held-out fve_nrm from benchmarks/fve.py) "
                         "instead of the mean fve_nrm of its explanations on the task's activations")
    ap.add_argument("--note", action="append", default=[], help="an extra bullet for the BENCHMARKS.md entry")
    ap.add_argument("--from-logs", nargs="+", default=None, metavar="LOG",
                    help="tabulate existing .eval logs (files or folders) instead of running, e.g. runs split by task")
    args = ap.parse_args()
    if args.write_data:
        from nla_audit.evals.datasets import main as datasets_main

        raise SystemExit(datasets_main([]))

    from nla_audit.evals.cli import run_tasks, task_names

    if args.from_logs:
        return report(collect_logs(args.from_logs), args, minutes=None)
    tasks = task_names(args.tasks)
    common = {k: v for k, v in {"n": args.limit, "probe_train": args.probe_train, "grader": args.grader,
                                "max_new_tokens": args.max_new_tokens, "model": args.model,
                                "layer": args.layer}.items() if v is not None}
    if args.grader != "embed":
        common["grader_model"] = args.grader_model
    sets = []
    for name, av, ar in args.pair:
        sets.append({**common, "av": av, "ar": ar, "explainer": "nla", "label": name})
        if not args.no_floor:
            sets.append({**common, "av": av, "ar": ar, "explainer": "nla-shuffled", "label": name})
    site = {"av": args.pair[0][1], "ar": args.pair[0][2]} if args.pair else {}
    for ref in [r for r in args.references.split(",") if r]:
        ps = {**common, **site, "explainer": ref}
        if ref == "probe":
            ps = {k: v for k, v in ps.items() if k not in ("grader", "grader_model")}
        sets.append(ps)
    t0 = time.time()
    logs = run_tasks(tasks, sets, args.log_dir)
    report(logs, args, minutes=(time.time() - t0) / 60)


def collect_logs(paths: list[str]) -> list:
    from inspect_ai.log import read_eval_log

    files = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.eval")) if p.is_dir() else [p]
    logs = [read_eval_log(str(f)) for f in files]
    return [lg for lg in logs if lg.status == "success" and (lg.eval.metadata or {}).get("task")]


def _minutes(log) -> float:
    from datetime import datetime

    start, end = (datetime.fromisoformat(str(t)) for t in (log.stats.started_at, log.stats.completed_at))
    return (end - start).total_seconds() / 60


def report(logs: list, args, minutes: float | None) -> None:
    from _common import record

    from nla_audit.evals._results import grader_agreement, markdown_table, plot_vs_fve, results_frame

    if not logs:
        raise SystemExit("no successful nla_audit eval logs to report")
    tasks = list(dict.fromkeys(lg.eval.metadata["task"] for lg in logs))
    df = results_frame(logs)
    for spec in args.fve:
        name, _, value = spec.partition("=")
        df.loc[(df["checkpoint"] == name) & (df["explainer"] == "nla"), "fve_nrm"] = float(value)
    df.to_csv(args.csv, index=False)
    png = plot_vs_fve(df, args.png)

    meta = logs[0].eval.metadata
    took = f"{minutes:.1f} min" if minutes is not None else "tabulated from logs (" + ", ".join(
        f"{lg.eval.metadata['task']}/{lg.eval.metadata['explainer']} {_minutes(lg):.1f} min" for lg in logs) + ")"
    graders = sorted({g for lg in logs for g in lg.eval.metadata.get("graders", [])})
    sizes = sorted({(lg.eval.metadata["task"], lg.eval.metadata["n_eval"], lg.eval.metadata["n_train"]) for lg in logs})
    lines = [f"- site: {meta['model']} layer {meta['layer']}; tasks: {', '.join(tasks)}; graders: {', '.join(graders)} "
             "(embed = the offline embedding proxy, all-MiniLM-L6-v2; model = the `grader` role); "
             f"{len(logs)} evals, {took}",
             "- items (task, eval, probe-train): " + "; ".join(f"{t} {e}/{n}" for t, e, n in sizes) +
             "; datasets version 1, seed 0 (the shipped JSON)",
             "- conditions: `nla` = the checkpoint's AV (greedy, max_new_tokens "
             f"{args.max_new_tokens}); `nla-shuffled` = floor (the same AV fed another item's activation); "
             "`probe` = ceiling for linearly available information (logistic/ridge on the raw activation, fit on "
             "the task's train split); `text` = the grader reading the raw text context instead of an explanation",
             "- score = accuracy (chance in the table) or, for cot_hints and sandbagging, the gap P(says yes | pos) − "
             "P(says yes | neg); 95% CI: Wilson / bootstrap", ""]
    lines += markdown_table(df)
    agree = grader_agreement(logs)
    if len(agree):
        lines += ["", "Offline grader vs model grader on the same explanations:", "",
                  "| task | explainer | checkpoint | n | agreement | embed score | model score |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.task} | {r.explainer} | {r.checkpoint} | {r.n} | {r.agreement:.3f} | {r.embed:.3f} | {r.model:.3f} |"
                  for r in agree.itertuples()]
    lines += [""] + [f"- {n}" for n in args.note]
    lines += [f"- per-group rows: `{os.path.relpath(args.csv, ROOT)}`; plot: `{os.path.relpath(png, ROOT)}`; "
                  f"logs: {', '.join(f'`{os.path.relpath(p, ROOT)}`' for p in (args.from_logs or [args.log_dir]))} "
                  "(`inspect view --log-dir ...`)"]
    record("NLA evals: five tasks with floors, ceilings and readers", lines, args.append)


if __name__ == "__main__":
    main()
