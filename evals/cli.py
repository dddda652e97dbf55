"""``nla-audit eval TASK``: run an eval task through inspect-ai and print its results table.

The same tasks run with ``inspect eval nla_audit/<task> -T key=value``; this command maps flags to task
parameters, runs several explainers (``--explainer nla,nla-shuffled,probe,text``) in one call, writes ``.eval``
logs (``--log-dir``, open them with ``inspect view``) and prints the results DataFrame (markdown, or JSON Lines
with ``--json``). Registered through the ``nla_audit.commands`` entry point.
"""

from __future__ import annotations

import json
import os
import sys


def register(sub) -> None:
    p = sub.add_parser("eval", help="run an NLA eval task (classification, suffix_prediction, user_modeling, "
                                    "cot_hints, sandbagging, root_cause) through inspect-ai")
    p.add_argument("task", help="task name, or 'all' for every explain-a-token task but sandbagging")
    p.add_argument("-T", "--task-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a task parameter, as `inspect eval -T` takes it (repeatable); root_cause takes its "
                        "organisms, conditions, data, seeds, auditor this way")
    p.add_argument("--av", default=None, help="AV checkpoint folder (default: the shipped NLA)")
    p.add_argument("--ar", default=None, help="AR checkpoint folder (default: the shipped NLA)")
    p.add_argument("--explainer", default="nla",
                   help="comma list of nla | nla-shuffled (floor) | sae | probe (ceiling) | text (raw-context reader)")
    p.add_argument("--grader", default="embed", choices=["embed", "claude", "both"],
                   help="embed: offline embedding proxy (default); claude: Claude via the grader role; both")
    p.add_argument("--grader-model", default="anthropic/claude-haiku-4-5", help="model for --grader claude/both")
    p.add_argument("--limit", type=int, default=None,
                   help="at most N eval items per group: the task parameter n (-T n=N); not inspect's --limit, "
                        "which caps samples in all")
    p.add_argument("--probe-train", type=int, default=None, help="train items per group for the probe")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (0 = the shipped JSON)")
    p.add_argument("--model", default=None, help="target model (must match the NLA's)")
    p.add_argument("--layer", type=int, default=None, help="layer K (must match the NLA's)")
    p.add_argument("--sae", default=None, help="SAE checkpoint for --explainer sae")
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--temperature", type=float, default=None, help="AV sampling temperature (default 0 = greedy)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--label", default=None, help="checkpoint label in the table")
    p.add_argument("--device", default=None)
    p.add_argument("--allow-base", action="store_true", help="sandbagging: run on a target without the implant")
    p.add_argument("--log-dir", default="logs", help="where .eval logs go (open with `inspect view --log-dir`)")
    p.add_argument("--groups", action="store_true", help="also print one row per group")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.set_defaults(func=run)


def task_names(spec: str) -> list[str]:
    from nla_audit.errors import InputError
    from nla_audit.evals import TASKS as tasks

    names = list(tasks[:-1]) if spec == "all" else [t.strip() for t in spec.split(",") if t.strip()]
    bad = [t for t in names if t not in tasks]
    if bad or not names:
        raise InputError(f"unknown eval task {', '.join(bad) or repr(spec)}", expected=" | ".join(tasks) + " | all")
    return names


def params(args, explainer: str) -> dict:
    grader = {"claude": "model", "both": "both"}.get(args.grader, "embed")
    out = {"av": args.av, "ar": args.ar, "explainer": explainer, "grader": grader, "n": args.limit,
           "probe_train": args.probe_train, "seed": args.seed, "model": args.model, "layer": args.layer,
           "sae": args.sae, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
           "batch_size": args.batch_size, "label": args.label, "device": args.device, "allow_base": args.allow_base}
    if grader != "embed" and explainer != "probe":
        out["grader_model"] = args.grader_model
    return {k: v for k, v in out.items() if v is not None}


def check_grader(args) -> None:
    """Fail before any model loads when the Claude grader cannot run."""
    import importlib.util

    from nla_audit.errors import InputError

    if args.grader == "embed" or not args.grader_model.startswith("anthropic/"):
        return
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise InputError("grader unavailable: --grader claude needs ANTHROPIC_API_KEY, which is not set",
                         fix="export ANTHROPIC_API_KEY=..., or use the offline grader (--grader embed)")
    if importlib.util.find_spec("anthropic") is None:
        raise InputError("grader unavailable: the anthropic package is not installed",
                         fix="pip install anthropic, or use the offline grader (--grader embed)")
    from nla_audit.claude import check_reachable

    check_reachable(alternative="use the offline grader (--grader embed)")  # before any model loads


def task_params(items: list[str]) -> dict:
    """``-T key=value`` items → a dict, values read as YAML scalars (as inspect reads them)."""
    import yaml

    from nla_audit.errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"-T {item!r} is not key=value", expected="e.g. -T seeds=2")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_root_cause(args) -> int:
    """``nla-audit eval root_cause``: the audit task, its win-rate table (offline rubric) and the logs."""
    from nla_audit.evals.root_cause import root_cause
    from nla_audit.evals.root_cause.results import markdown, score_rows, summarize

    ps = {**{k: getattr(args, k) for k in ("av", "ar", "device") if getattr(args, k) is not None},
          **task_params(args.task_param)}
    if args.grader != "embed":
        ps.setdefault("grader", {"claude": "model", "both": "both"}[args.grader])
        ps.setdefault("grader_model", args.grader_model)
    log = run_built([root_cause(**ps)], args.log_dir, eval_display(args))[0]
    rows = score_rows([log])
    if args.json:
        for r in summarize(rows):
            print(json.dumps(r, default=str))
    else:
        print("\n".join(markdown(summarize(rows))))
        print(f"\nlogs: {args.log_dir} (inspect view --log-dir {args.log_dir})", file=sys.stderr)
    return 0


def run(args) -> int:
    from nla_audit.errors import InputError

    if args.task == "root_cause":
        return run_root_cause(args)
    names = task_names(args.task)
    explainers = [e.strip() for e in args.explainer.split(",") if e.strip()]
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit}", expected="an integer >= 1")
    check_grader(args)
    extra = task_params(args.task_param)  # -T key=value, as inspect takes it; wins over the flags
    logs = run_tasks(names, [{**params(args, e), **extra} for e in explainers], args.log_dir, eval_display(args))
    from nla_audit.evals._results import markdown_table, results_frame

    df = results_frame(logs)
    if not args.groups:
        df = df[df["group"] == "all"]
    if args.json:
        for rec in df.to_dict(orient="records"):
            print(json.dumps(rec, default=str))
    else:
        print("\n".join(markdown_table(df, groups=True)))
        print(f"\nlogs: {args.log_dir} (inspect view --log-dir {args.log_dir})", file=sys.stderr)
    return 0


def eval_display(args) -> str:
    """inspect's own progress display (tasks, samples done, elapsed) on a terminal; none under --json or when the
    output is piped, so JSON Lines and the results table stay the only output."""
    return "rich" if not args.json and sys.stdout.isatty() and sys.stderr.isatty() else "none"


def run_tasks(names: list[str], param_sets: list[dict], log_dir: str, display: str = "none") -> list:
    """Build every (task, parameter set) first (so a bad site fails before anything runs), then run them."""
    import importlib


    tasks = []
    for name in names:
        fn = getattr(importlib.import_module(f"nla_audit.evals.{name}"), name)
        for ps in param_sets:
            tasks.append(fn(**ps))
    return run_built(tasks, log_dir, display)


def run_built(tasks: list, log_dir: str, display: str = "none") -> list:
    """Run built inspect tasks one after another; a failed run is one line naming its log."""
    from inspect_ai import eval as inspect_eval

    from nla_audit.errors import NLAAuditError

    logs = []
    for t in tasks:
        log = inspect_eval(t, display=display, log_dir=log_dir, max_samples=32, fail_on_error=True)[0]
        if log.status != "success":
            msg = (log.error.message if log.error else log.status).strip().splitlines()
            raise NLAAuditError(f"eval {t.name} failed: {msg[-1] if msg else log.status}",
                                fix=f"see the log in {log_dir}")
        logs.append(log)
    return logs
