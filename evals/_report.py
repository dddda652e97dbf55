"""The ``nla-audit bench`` report: headline table, full tables and charts from the two result frames.

``recon``: one row per reconstruction condition (task 'reconstruction', fve_nrm with CI, cost columns).
``evals``: ``_results.results_frame`` plus ``s_per_item``. Only pandas/matplotlib, imported inside functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

ORDER = {"nla": 0, "nla-shuffled": 1, "sae": 2, "sae-decoder": 3, "constant": 4, "token-lookup": 5, "probe": 6,
         "text": 7}
ROLE = {"nla": "NLA", "nla-shuffled": "floor: NLA fed other activations",
        "sae": "SAE baseline: the top latents its explanation lists",
        "sae-decoder": "SAE full decoder, all active latents (no explanation carries this)",
        "constant": "reference: predict the training mean direction",
        "token-lookup": "reference: the training mean direction at the same final token (names only the token)",
        "probe": "ceiling: linear probe on the activation", "text": "reader of the raw text context"}
FOOTNOTE = ("fve_nrm = 1 − mse_nrm / B_rv on held-out activations, B_rv = {b_rv:.4f} (the training-set variance of "
            "the normalised vectors, from the first NLA's AR sidecar), so predicting the training mean vector scores "
            "≈ 0 and the constant mean *direction* scores 1 − B_mn/B_rv. The floor feeds each activation's AV "
            "another activation: it shows how much of the score depends on the activation, it is not chance. Task "
            "scores: accuracy, or for cot_hints/sandbagging the gap P(yes | pos) − P(yes | neg); 95% CI Wilson / "
            "bootstrap (fve_nrm: over documents). training = wall time recorded with the checkpoint (NLA: SFT stages + RL; it excludes "
            "activation extraction and teacher datagen; SAE: its training loop), each on its own device; time / "
            "explained activation measured here on {device} (NLA: AV generation + AR after a warm-up, batch 16; "
            "SAE: encoding + top latents, one batch).")


def fmt_ci(score: float, lo: float, hi: float) -> str:
    if math.isnan(score):
        return ""
    return f"{score:.3f} [{lo:.3f}, {hi:.3f}]"


def fmt_time(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def fmt_latency(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return ""
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.2g} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def _eval_choice(evals):
    """One grader per condition for the headline: the model grader when it ran, else the offline one."""
    if evals is None or not len(evals):
        return evals
    e = evals[evals["group"] == "all"]
    pref = {"model": 0, "embed": 1, "probe": 2}
    e = e.assign(_p=e["grader"].map(pref).fillna(3)).sort_values("_p")
    return e.drop_duplicates(["task", "explainer", "checkpoint"]).drop(columns="_p")


def headline_rows(recon, evals) -> tuple[list[str], list[dict]]:
    """Markdown lines and records: one row per explainer × checkpoint, fve and every task side by side."""
    e = _eval_choice(evals)
    tasks = list(dict.fromkeys(e["task"])) if e is not None and len(e) else []
    keys = []
    for df in (recon, e):
        if df is not None and len(df):
            keys += [(r.explainer, r.checkpoint) for r in df.itertuples()]
    keys = sorted(dict.fromkeys(keys), key=lambda k: (ORDER.get(k[0], 9), str(k[1])))
    chance = {t: e[e["task"] == t]["chance"].mean() for t in tasks}
    head = ["explainer", "checkpoint", "held-out fve_nrm [95% CI]"] + [
        f"{t} ({'gap' if (e[e['task'] == t]['metric'] == 'gap').all() else 'acc'}, chance {chance[t]:.2f})"
        for t in tasks] + ["training", "time / explained activation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    records = []
    for expl, ckpt in keys:
        r = recon[(recon["explainer"] == expl) & (recon["checkpoint"] == ckpt)] if len(recon) else recon
        rec: dict[str, Any] = {"explainer": expl, "checkpoint": ckpt, "role": ROLE.get(expl, expl)}
        cells = [f"{expl} ({ROLE.get(expl, expl)})", str(ckpt)]
        if len(r):
            x = r.iloc[0]
            rec.update(fve=x["score"], fve_low=x["ci_low"], fve_high=x["ci_high"], s_per_activation=x["s_per_activation"],
                       train_s=x.get("train_s"))
            cells.append(fmt_ci(x["score"], x["ci_low"], x["ci_high"]))
        else:
            cells.append("")
        for t in tasks:
            m = e[(e["task"] == t) & (e["explainer"] == expl) & (e["checkpoint"] == ckpt)]
            if len(m):
                y = m.iloc[0]
                rec[t] = y["score"]
                cells.append(fmt_ci(y["score"], y["ci_low"], y["ci_high"]) + (" (model grader)" if y["grader"] == "model" else ""))
            else:
                cells.append("")
        is_floor = expl in ("nla-shuffled", "constant", "token-lookup")
        cells.append("" if is_floor else (fmt_time(rec.get("train_s")) if expl in ("nla", "sae") else "-"))
        spa = rec.get("s_per_activation")
        cells.append("" if is_floor else fmt_latency(spa))
        lines.append("| " + " | ".join(cells) + " |")
        records.append(rec)
    return lines, records


def recon_table(recon) -> list[str]:
    lines = ["| explainer | checkpoint | n | fve_nrm mean [95% CI] | median | mse_nrm | cos | failed parse | "
             "time / activation | training |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recon.itertuples():
        failed = "" if r.failed is None or r.failed != r.failed else f"{r.failed:.2f}"
        lines.append(f"| {r.explainer} | {r.checkpoint} | {r.n} | {fmt_ci(r.score, r.ci_low, r.ci_high)} | "
                     f"{r.median:.3f} | {r.mse_nrm:.3f} | {r.cos:.3f} | {failed} | {fmt_latency(r.s_per_activation)} | "
                     f"{fmt_time(r.train_s) if r.explainer in ('nla', 'sae') else ''} |")
    return lines


def write_report(folder: Path, recon, evals, subj: Any, info: dict) -> list[str]:
    """report.md + PNGs into ``folder``; returns the headline markdown lines."""
    from nla_audit.evals._results import markdown_table, plot_vs_fve

    headline, _ = headline_rows(recon, evals)
    md = ["# nla-audit bench", "",
          f"- site: {info['site']}",
          *[f"- {k}: `{v}`" for k, v in info["checkpoints"].items()],
          f"- held-out data (reconstruction): {info['data']}; {info['heldout_check']}",
          f"- AV decoding: {info['decoding']}, max_new_tokens {info['max_new_tokens']}",
          f"- eval tasks: {', '.join(info['tasks']) or 'none'}; items per group: {info['limit'] or 'all'}; "
          f"grader: {info['grader']}",
          f"- machine: {info['machine']}; date: {info['date']}; took {info['minutes']:.1f} min",
          f"- command: `{info['command']}`", ""]
    md += [f"> **warning**: {w}" for w in info["warnings"]] + ([""] if info["warnings"] else [])
    md += ["## Headline", "", *headline, "",
           FOOTNOTE.format(b_rv=info["b_rv"], device=info["device"]), "",
           "## Reconstruction", "", *recon_table(recon), ""]
    if evals is not None and len(evals):
        md += ["## Eval tasks (every grader and group)", "", *markdown_table(evals, groups=True), ""]
        plot_vs_fve(on_heldout_fve(evals), folder / "evals_vs_fve.png", xlabel="checkpoint held-out fve_nrm")
        plot_scores(evals, folder / "scores.png")
        md += ["![scores](scores.png)", "", "![evals vs fve](evals_vs_fve.png)", ""]
    plot_fve(recon, folder / "fve.png")
    md += ["![fve](fve.png)", "", "Logs: `logs/` (`inspect view --log-dir logs`). Raw rows: `results.parquet`."]
    (folder / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return headline


def on_heldout_fve(evals):
    """The eval frame with each NLA row's x = its checkpoint's held-out fve_nrm (as the paper plots)."""
    ev = evals.copy()
    nla = ev["explainer"] == "nla"
    ev.loc[nla, "fve_nrm"] = ev.loc[nla, "heldout_fve_nrm"]
    return ev[ev["fve_nrm"].notna() | ~nla]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _yerr(d) -> list:
    """Error bars from a CI, clipped at 0: a percentile bootstrap interval need not contain the point estimate
    exactly (float rounding with one document; skew), and matplotlib refuses negative bars."""
    import numpy as np

    return [np.clip(d["score"] - d["ci_low"], 0, None), np.clip(d["ci_high"] - d["score"], 0, None)]


def plot_fve(recon, out: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(recon) + 1), 3.4))
    labels = [f"{r.explainer}\n{r.checkpoint}" for r in recon.itertuples()]
    ax.bar(range(len(recon)), recon["score"], yerr=_yerr(recon),
           capsize=4, color=[{"nla": "tab:blue", "nla-shuffled": "tab:gray", "sae": "tab:orange"}.get(x, "tab:green")
                             for x in recon["explainer"]])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(recon)), labels, fontsize=7)
    ax.set_ylabel("held-out fve_nrm")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_scores(evals, out: Path) -> None:
    plt = _plt()
    e = _eval_choice(evals)
    tasks = list(dict.fromkeys(e["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        d = e[e["task"] == t].sort_values("explainer", key=lambda s: s.map(ORDER))
        ax.bar(range(len(d)), d["score"], yerr=_yerr(d), capsize=3)
        ax.axhline(float(d["chance"].mean()), ls=":", color="black", lw=1)
        ax.set_xticks(range(len(d)), [f"{r.explainer}\n{r.checkpoint}" for r in d.itertuples()], fontsize=6)
        ax.set_title(t, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
