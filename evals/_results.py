"""Confidence intervals and the results table (task × explainer × checkpoint × grader × group) from logs.

Intervals: Wilson (95%) for accuracies, a seeded percentile bootstrap (95%, 2,000 resamples, resampling within
each condition) for the CoT-hints / sandbagging gap. Only numpy at import time; pandas and matplotlib are
imported by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nla_audit.metrics import Z95, wilson  # noqa: F401  (re-exported: evals and benchmarks import it here)


def gap_with_ci(pos: Sequence[float], neg: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """P(yes | positive condition) − P(yes | negative condition), with a bootstrap 95% interval."""
    pos_a, neg_a = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos_a) == 0 or len(neg_a) == 0:
        nan = float("nan")
        return {"gap": nan, "p_pos": nan, "p_neg": nan, "lower": nan, "upper": nan}
    rng = np.random.default_rng(seed)
    bp = pos_a[rng.integers(0, len(pos_a), (n_boot, len(pos_a)))].mean(1)
    bn = neg_a[rng.integers(0, len(neg_a), (n_boot, len(neg_a)))].mean(1)
    diff = bp - bn
    return {"gap": float(pos_a.mean() - neg_a.mean()), "p_pos": float(pos_a.mean()), "p_neg": float(neg_a.mean()),
            "lower": float(np.percentile(diff, 2.5)), "upper": float(np.percentile(diff, 97.5))}


# ------------------------------------------------------------------------------------------- logs → frame
def sample_records(logs: Iterable[Any]) -> list[dict]:
    """One record per (log, sample, scorer) with everything the tables need; accepts EvalLogs or paths."""
    from inspect_ai.log import read_eval_log

    out = []
    for log in logs:
        if isinstance(log, (str, Path)):
            log = read_eval_log(str(log))
        meta = log.eval.metadata or {}
        for s in log.samples or []:
            for scorer_name, sc in (s.scores or {}).items():
                m = sc.metadata or {}
                out.append({"task": meta.get("task", log.eval.task), "explainer": meta.get("explainer"),
                            "checkpoint": meta.get("checkpoint"), "site": f"{meta.get('model')}@L{meta.get('layer')}",
                            "grader": scorer_name.replace("_grader", ""), "kind": meta.get("kind"),
                            "sample": s.id, "group": (s.metadata or {}).get("group"),
                            "condition": (s.metadata or {}).get("condition"), "value": float(sc.value),
                            "choice": m.get("choice"), "chance": m.get("chance"), "fve_nrm": m.get("fve_nrm"),
                            "log": str(log.location)})
    return out


def results_frame(logs: Iterable[Any], by_group: bool = True):
    """pandas DataFrame: one row per task × explainer × checkpoint × grader (× group, plus group 'all'),
    with n, score, 95% CI, chance and mean fve_nrm (NLA conditions only)."""
    import pandas as pd

    recs = pd.DataFrame(sample_records(logs))
    cols = ["task", "explainer", "checkpoint", "site", "grader", "group", "metric", "n", "score", "ci_low", "ci_high",
            "chance", "fve_nrm"]
    if recs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    keys = ["task", "explainer", "checkpoint", "site", "grader"]
    for key, df in recs.groupby(keys, sort=False, dropna=False):
        groups = [("all", df)] + (list(df.groupby("group", sort=True)) if by_group and df["group"].nunique() > 1 else [])
        for gname, g in groups:
            rows.append(dict(zip(keys, key)) | {"group": gname} | _summarise(g))
    return pd.DataFrame(rows, columns=cols)


def _summarise(g) -> dict:
    fve = g["fve_nrm"].dropna()
    base = {"n": len(g), "chance": float(g["chance"].mean()) if g["chance"].notna().any() else float("nan"),
            "fve_nrm": float(fve.mean()) if len(fve) else float("nan")}
    if (g["kind"] == "gap").all():
        res = gap_with_ci(g.loc[g["condition"] == "pos", "value"], g.loc[g["condition"] == "neg", "value"])
        return base | {"metric": "gap", "score": res["gap"], "ci_low": res["lower"], "ci_high": res["upper"], "chance": 0.0}
    lo, hi = wilson(float(g["value"].sum()), len(g))
    return base | {"metric": "accuracy", "score": float(g["value"].mean()), "ci_low": lo, "ci_high": hi}


def grader_agreement(logs: Iterable[Any]):
    """Per task × explainer × checkpoint: how often the offline grader picks the same option as the model
    grader on the same explanation, and both graders' scores (logs run with -T grader=both)."""
    import pandas as pd

    recs = pd.DataFrame(sample_records(logs))
    if recs.empty or not {"embed", "model"} <= set(recs["grader"]):
        return pd.DataFrame(columns=["task", "explainer", "checkpoint", "n", "agreement", "embed", "model"])
    wide = recs.pivot_table(index=["task", "explainer", "checkpoint", "log", "sample"], columns="grader",
                            values=["choice", "value"], aggfunc="first").dropna()
    rows = []
    for key, g in wide.groupby(level=[0, 1, 2]):
        rows.append({"task": key[0], "explainer": key[1], "checkpoint": key[2], "n": len(g),
                     "agreement": float((g[("choice", "embed")] == g[("choice", "model")]).mean()),
                     "embed": float(g[("value", "embed")].mean()), "model": float(g[("value", "model")].mean())})
    return pd.DataFrame(rows)


def markdown_table(df, groups: bool = False) -> list[str]:
    """Markdown lines for BENCHMARKS.md (group 'all' rows only unless ``groups``)."""
    if not groups and "group" in df:
        df = df[df["group"] == "all"]
    lines = ["| task | explainer | checkpoint | grader | group | metric | n | score [95% CI] | chance | fve_nrm |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples(index=False):
        fve = "" if r.fve_nrm != r.fve_nrm else f"{r.fve_nrm:.3f}"
        lines.append(f"| {r.task} | {r.explainer} | {r.checkpoint} | {r.grader} | {r.group} | {r.metric} | {r.n} | "
                     f"{r.score:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] | {r.chance:.3f} | {fve} |")
    return lines


def plot_vs_fve(df, out: str | Path, xlabel: str = "checkpoint fve_nrm (on the task's activations)") -> Path:
    """PNG: one panel per task; score (with CI) of each NLA checkpoint against its fve_nrm, and the floors,
    ceilings and readers as horizontal reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df[df["group"] == "all"]
    tasks = list(dict.fromkeys(df["task"]))
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.2 * max(1, len(tasks)), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        d = df[df["task"] == task]
        nla = d[d["explainer"] == "nla"]
        for grader, g in nla.groupby("grader"):
            g = g.sort_values("fve_nrm")
            ax.errorbar(g["fve_nrm"], g["score"], yerr=[g["score"] - g["ci_low"], g["ci_high"] - g["score"]],
                        marker="o", capsize=3, label=f"NLA ({grader})")
            floor = d[(d["explainer"] == "nla-shuffled") & (d["grader"] == grader)]
            x = floor["checkpoint"].map(dict(zip(g["checkpoint"], g["fve_nrm"])))
            if len(floor):  # the floor of a checkpoint sits at that checkpoint's fve_nrm
                ax.scatter(x, floor["score"], marker="x", color="tab:gray", label=f"floor: shuffled ({grader})")
        refs = d[~d["explainer"].isin(["nla", "nla-shuffled"])]
        for (expl, grader), g in refs.groupby(["explainer", "grader"]):
            ax.axhline(float(g["score"].mean()), ls="--", lw=1, label=f"{expl} ({grader})",
                       color={"probe": "tab:green", "text": "tab:purple"}.get(expl, "tab:gray"))
        ax.axhline(float(d["chance"].mean()), ls=":", color="black", lw=1, label="chance")
        gap = (d["metric"] == "gap").all()
        ax.set_ylim(-1.05 if gap else 0.0, 1.05)
        ax.set_title(task)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gap P(correct|pos) - P(correct|neg)" if gap else "accuracy")
        ax.legend(fontsize=6)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
