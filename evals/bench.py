"""``nla-audit bench``: NLA checkpoints against the SAE baseline, floors and ceilings, on the same held-out data.

Two parts, one site (target model, layer K) for everything:

1. **Reconstruction** on held-out activations (``_fve``): each NLA's round trip, its shuffled-activation floor,
   and the SAE's decoder, all as fve_nrm with bootstrap 95% intervals, plus what an explanation costs
   (seconds per explained activation on this machine) and what training cost (from the checkpoint sidecars /
   SAE metrics).
2. **The eval tasks** through inspect-ai (``run_tasks``): per NLA ``nla`` and ``nla-shuffled`` (floor), the SAE
   explainer, and once per site the linear ``probe`` (ceiling) and the raw-``text`` reader.

The report folder (written whole or not at all) holds ``report.md`` (headline and full tables), ``results.parquet``
(every row of both parts), ``fve.png``, ``scores.png``, ``evals_vs_fve.png`` and the ``.eval`` logs. The headline
table is appended to ``BENCHMARKS.md`` only with ``--append`` (``--benchmarks`` names the file). A site mismatch between the
NLAs and the SAE is an error; an SAE without latent labels runs with a warning printed in the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nla_audit.errors import InputError

DEFAULT_TASKS = ("classification", "suffix_prediction", "user_modeling", "cot_hints")


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run compares, and on how much data."""

    nla: tuple[tuple[str, str, str], ...] | None = None
    """(name, AV folder, AR folder) per NLA checkpoint; None = the shipped default NLA as 'default'; () = none."""
    sae: str | None = "default"
    """SAE folder (SAELens format + sae_meta.yaml); 'default' = the shipped SAE; None = no SAE rows."""
    tasks: tuple[str, ...] = DEFAULT_TASKS
    references: tuple[str, ...] = ("probe", "text")
    floors: bool = True
    data: str | None = None
    """Held-out activation parquet; default: the test split of ``corpus``, extracted now."""
    max_rows: int | None = None
    """At most this many rows of ``data`` (the AV explains each one, twice with the floor)."""
    corpus: str = "default"
    docs: int = 60
    positions: int = 2
    limit: int | None = 40
    """Eval items per group (None = every shipped item)."""
    probe_train: int | None = None
    temperature: float = 0.0
    max_new_tokens: int = 96
    grader: str = "embed"
    grader_model: str | None = None
    seed: int = 0
    out: str = "bench-report"
    benchmarks: str | None = "BENCHMARKS.md"
    """Markdown file the headline table is appended to; None = do not append."""
    train_time: tuple[tuple[str, float], ...] = ()
    """(name, seconds) overrides for checkpoints whose sidecars do not record their training time."""
    device: str | None = None

    def __post_init__(self) -> None:
        names = [n for n, _, _ in self.nla or ()]
        if len(set(names)) != len(names):
            raise InputError(f"NLA names repeat: {names}", expected="one distinct NAME per --nla")
        if any(n in ("sae", "-") for n in names):
            raise InputError("'sae' and '-' are reserved row names", fix="give the NLA another NAME")
        if self.docs < 1 or self.positions < 1 or any(x is not None and x < 1 for x in (self.limit, self.max_rows)):
            raise InputError("--docs, --positions, --limit and --max-rows must be >= 1")
        bad = [r for r in self.references if r not in ("probe", "text")]
        if bad:
            raise InputError(f"unknown reference(s) {bad}", expected="probe, text (or none)")
        known = {n for n, _, _ in self.nla or ()} | {"sae", "default"}
        bad = [n for n, _ in self.train_time if n not in known]
        if bad:
            raise InputError(f"--train-time names {bad} match no checkpoint", expected=f"one of {sorted(known)}")
        if not 0.0 <= self.temperature <= 5.0:
            raise InputError(f"temperature {self.temperature}", expected="a number in [0, 5] (0 = greedy)")
        if self.nla == () and not self.sae:
            raise InputError("nothing to benchmark", expected="at least one --nla or an --sae")


# ------------------------------------------------------------------------------------------------ sites
@dataclass
class Subjects:
    """The checkpoints under comparison, checked to read one site, with their costs and warnings."""

    nla: list[tuple[str, str, str]]
    model: str
    layer: int
    sae: Any = None  # SAEExplainer
    train_seconds: dict[str, float | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    trained_on: list[str] = field(default_factory=list)  # training parquets the sidecars name
    heldout_check: str = ""


def resolve_subjects(cfg: BenchConfig) -> Subjects:
    """Read sidecars (no weights for the NLA) and refuse mixed sites before anything expensive runs."""
    from nla_audit.checkpoint import read_sidecar, resolve_checkpoint
    from nla_audit.site import model_key

    nla, notes = list(cfg.nla or ()), []
    if cfg.nla is None:
        from nla_audit.paths import default_nla_dir

        shipped = default_nla_dir()
        if shipped is None:
            notes.append("no --nla given and no shipped NLA is installed: SAE rows only")
        else:
            nla = [("default", str(shipped / "av"), str(shipped / "ar"))]
    sites, costs, trained = {}, {}, []
    for name, av, ar in nla:
        av_meta = read_sidecar(resolve_checkpoint(av), "av")
        ar_meta = read_sidecar(resolve_checkpoint(ar), "ar")
        sites[name] = (av_meta.base_model, ar_meta.require_layer())
        costs[name] = pair_training_seconds(av_meta, ar_meta)
        trained += list(av_meta.trained_on) + list(ar_meta.trained_on)
    if len({(model_key(m), k) for m, k in sites.values()}) > 1:
        raise InputError(f"the NLAs read different sites: {sites}", expected="every --nla on one model and layer")
    subj = Subjects(nla=nla, model="", layer=-1, train_seconds=costs, warnings=notes, trained_on=trained)
    if sites:
        subj.model, subj.layer = next(iter(sites.values()))
    if cfg.sae:
        _attach_sae(subj, cfg)
    for name, secs in cfg.train_time:
        subj.train_seconds[name] = float(secs)
    return subj


def _attach_sae(subj: Subjects, cfg: BenchConfig) -> None:
    import json
    import warnings

    from nla_audit.baselines.sae import METRICS_NAME, read_sae_meta
    from nla_audit.evals._runner import load_sae_explainer
    from nla_audit.site import check_same_site

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        sae = load_sae_explainer(cfg.sae, cfg.device)
    if subj.nla:
        check_same_site(sae, (subj.model, subj.layer))
    else:
        subj.model, subj.layer = sae.site
    if sae.warning:
        subj.warnings.append(f"SAE without labels: {sae.warning}")
    subj.sae = sae
    subj.trained_on += list(((read_sae_meta(Path(sae.source)).get("config") or {}).get("data")) or [])
    metrics = Path(sae.source) / METRICS_NAME
    secs = None
    if metrics.exists():
        secs = (json.loads(metrics.read_text()).get("training") or {}).get("seconds")
    subj.train_seconds["sae"] = float(secs) if secs is not None else None


def pair_training_seconds(av_meta: Any, ar_meta: Any) -> float | None:
    """Wall time that produced an AV/AR pair: every training run behind either checkpoint, once (their
    ``training.stages``). Sidecars without that map: an RL AV's total already covers its AR (co-trained) and the
    SFT checkpoints it started from; an SFT pair costs AV + AR. None when a sidecar does not record it."""
    from nla_audit.training.run import lineage

    if all((m.training or {}).get("stages") for m in (av_meta, ar_meta)):
        stages, _ = lineage([av_meta.training, ar_meta.training])
        return round(sum(stages.values()), 1)
    av_t, ar_t = (None if (m.training or {}).get("total_wall_time_s") is None else float(m.training["total_wall_time_s"])
                  for m in (av_meta, ar_meta))
    if av_meta.stage == "rl":
        return av_t
    return None if av_t is None or ar_t is None else av_t + ar_t


# ------------------------------------------------------------------------------------------------ run
def check_outputs(cfg: BenchConfig) -> None:
    """Refuse, before any work, to replace a folder that is not an earlier report, or an unwritable target."""
    from nla_audit.atomic import check_writable

    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.md").exists())):
        raise InputError(f"--out {out} exists and is not an nla-audit bench report (no report.md)",
                         fix="choose a new folder; a report folder is replaced whole on success")
    if cfg.benchmarks:
        check_writable(cfg.benchmarks)


def run_bench(cfg: BenchConfig, progress: bool = True) -> Path:
    """Run both parts and write the report folder; returns its path."""
    import pandas as pd

    from nla_audit.atomic import atomic_dir
    from nla_audit.evals._report import write_report

    check_outputs(cfg)
    subj = resolve_subjects(cfg)
    if cfg.tasks:
        from nla_audit.evals.cli import task_names

        cfg = replace(cfg, tasks=tuple(task_names(",".join(cfg.tasks))))  # 'all' expands; unknown names fail now
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    t0 = time.time()
    out = Path(cfg.out)
    with atomic_dir(out) as tmp:
        recon = reconstruction_rows(cfg, subj, say)
        evals = eval_rows(cfg, subj, str(tmp / "logs"), say)
        if len(evals):  # the paper plots task scores against each checkpoint's held-out fve_nrm
            evals["heldout_fve_nrm"] = [_heldout(recon, r.explainer, r.checkpoint) for r in evals.itertuples()]
        info = run_info(cfg, subj, recon, time.time() - t0)
        headline = write_report(tmp, recon, evals, subj, info)
        all_rows = pd.concat([recon.assign(grader="-", group="all"), evals], ignore_index=True)
        all_rows.to_parquet(tmp / "results.parquet", index=False)
    if cfg.benchmarks:
        append_benchmarks(Path(cfg.benchmarks), headline, info, out)
    say(f"report: {out}/report.md")
    return out


def _heldout(recon, explainer: str, checkpoint: str) -> float | None:
    hit = recon[(recon["explainer"] == explainer) & (recon["checkpoint"] == checkpoint)]
    return float(hit["score"].iloc[0]) if len(hit) else None


def reconstruction_rows(cfg: BenchConfig, subj: Subjects, say):
    import pandas as pd
    import torch

    from nla_audit.evals import _fve
    from nla_audit.evals._runner import load_nla, load_target_cached


    torch.manual_seed(cfg.seed)
    nlas = {name: load_nla(av, ar, cfg.device) for name, av, ar in subj.nla}
    if cfg.data:
        data = _fve.heldout_from_parquet(cfg.data, subj.model, subj.layer, cfg.max_rows)
    else:
        say(f"extracting held-out activations: {cfg.docs} test-split documents of {cfg.corpus!r}")
        target = next(iter(nlas.values())).target if nlas else load_target_cached(subj.model, cfg.device)
        data = _fve.heldout_from_corpus(target, subj.layer, cfg.corpus, cfg.docs, cfg.positions, seed=7 + cfg.seed)
    subj.heldout_check = _fve.training_overlap(data.doc_ids, subj.trained_on)
    scale, base, mean_dir = common_scale(nlas, subj)
    rows = []
    if mean_dir is not None:
        rows.append(_fve.mean_direction_reconstruction(mean_dir, data, scale, base).summary())
    if nlas:
        lookup = _fve.token_lookup_reconstruction(subj.trained_on, data, next(iter(nlas.values())).av.tokenizer,
                                                  scale, base, site=(subj.model, subj.layer))
        if lookup is None:
            say("final-token lookup reference skipped: no training parquet the sidecars name is here at this site")
        else:
            rows.append(lookup.summary())
    for name, nla in nlas.items():
        for shuffled in ((False, True) if cfg.floors else (False,)):
            say(f"reconstruction: {name}{' (shuffled floor)' if shuffled else ''} on {len(data.vectors)} activations")
            rows.append(_fve.nla_reconstruction(nla, data, name, base, shuffled, cfg.temperature, cfg.max_new_tokens,
                                                seed=cfg.seed).summary())
    if subj.sae is not None:
        say("reconstruction: sae")
        rows += [r.summary() for r in _fve.sae_reconstruction(subj.sae, data, scale, base)]
    df = pd.DataFrame(rows)
    df["data"] = data.source
    df["train_s"] = [None if e in ("constant", "token-lookup", "sae-decoder", "nla-shuffled") else subj.train_seconds.get(c)
                     for e, c in zip(df["explainer"], df["checkpoint"])]
    df["b_rv"] = base
    return df


def common_scale(nlas: dict, subj: Subjects) -> tuple[float, float, Any]:
    """(mse_scale, B_rv, mean direction) shared by every row: the first NLA's AR sidecar (a warning when another
    NLA's differs), or for an SAE-only run the values SAE training recorded."""
    from nla_audit.metrics import default_mse_scale

    if not nlas:
        return default_mse_scale(subj.sae.d_model), _sae_baseline(subj.sae), None
    metas = {name: nla.ar.meta for name, nla in nlas.items()}
    first_name, first = next(iter(metas.items()))
    base = first.fve_baseline()
    if base is None:
        raise InputError(f"the AR of {first_name} has no baseline_rawvar in its sidecar, so fve_nrm is undefined",
                         fix="use an AR exported by nla-audit training (it stores the training-set variance)")
    for name, m in metas.items():
        other = m.fve_baseline()
        if other is None or abs(other - base) > 0.01 * base or m.mse_scale != first.mse_scale:
            subj.warnings.append(f"{name}'s AR sidecar has B_rv {other} / mse_scale {m.mse_scale}, {first_name}'s "
                                 f"{base:.4f} / {first.mse_scale}; every row uses {first_name}'s")
    return float(first.mse_scale), float(base), first.mean_direction


def _sae_baseline(sae) -> float:
    """B_rv for an SAE-only bench: the training-set variance SAE training recorded in its metrics.json."""
    import json

    from nla_audit.baselines.sae import METRICS_NAME

    path = Path(sae.source) / METRICS_NAME
    try:
        return float(json.loads(path.read_text())["baseline_rawvar"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path} does not record baseline_rawvar, so an SAE-only fve_nrm is undefined",
                         fix="pass an --nla as well, or an SAE trained by nla-audit sae train") from None


def eval_rows(cfg: BenchConfig, subj: Subjects, log_dir: str, say):
    import pandas as pd

    from nla_audit.evals._results import results_frame
    from nla_audit.evals.cli import run_tasks

    if not cfg.tasks:
        return pd.DataFrame()
    common = {k: v for k, v in {"n": cfg.limit, "probe_train": cfg.probe_train, "grader": cfg.grader,
                                "grader_model": cfg.grader_model, "max_new_tokens": cfg.max_new_tokens,
                                "temperature": cfg.temperature, "seed": cfg.seed, "device": cfg.device,
                                "model": None if subj.nla else subj.model, "layer": subj.layer}.items()
              if v is not None}
    sets = []
    for name, av, ar in subj.nla:
        sets.append({**common, "av": av, "ar": ar, "explainer": "nla", "label": name})
        if cfg.floors:
            sets.append({**common, "av": av, "ar": ar, "explainer": "nla-shuffled", "label": name})
    site = {"av": subj.nla[0][1], "ar": subj.nla[0][2]} if subj.nla else {}
    if subj.sae is not None:
        sets.append({**common, **site, "explainer": "sae", "sae": subj.sae.source, "label": "sae"})
    for ref in cfg.references:
        ps = {**common, **site, "explainer": ref}
        if ref == "probe":
            ps = {k: v for k, v in ps.items() if k not in ("grader", "grader_model", "temperature")}
        sets.append(ps)
    say(f"evals: {len(cfg.tasks)} tasks × {len(sets)} conditions (logs: {log_dir})")
    logs = run_tasks(list(cfg.tasks), sets, log_dir)
    df = results_frame(logs)
    secs = {}
    for lg in logs:
        m = lg.eval.metadata
        n = max(1, len(lg.samples or []))
        secs[(m["task"], m["explainer"], m["checkpoint"])] = _seconds(lg) / n
    df["s_per_item"] = [secs.get((r.task, r.explainer, r.checkpoint)) for r in df.itertuples()]
    return df


def _seconds(log) -> float:
    start, end = (dt.datetime.fromisoformat(str(t)) for t in (log.stats.started_at, log.stats.completed_at))
    return (end - start).total_seconds()


def run_info(cfg: BenchConfig, subj: Subjects, recon, seconds: float) -> dict:
    import torch

    from nla_audit.av import DEFAULT_RETRIES

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    grader = {"embed": "embed (offline embedding proxy, all-MiniLM-L6-v2; not the paper's Claude grader)",
              "model": f"model ({cfg.grader_model})", "both": f"embed + model ({cfg.grader_model})"}[cfg.grader]
    return {"site": f"{subj.model} layer {subj.layer}", "data": recon["data"].iloc[0] if len(recon) else "",
            "heldout_check": subj.heldout_check,
            "b_rv": float(recon["b_rv"].iloc[0]) if len(recon) else float("nan"),
            "decoding": ("greedy" if cfg.temperature == 0 else f"temperature {cfg.temperature}, seed {cfg.seed}")
                        + (f", unclosed explanations resampled up to {DEFAULT_RETRIES}×" if DEFAULT_RETRIES else ""),
            "max_new_tokens": cfg.max_new_tokens, "limit": cfg.limit, "tasks": list(cfg.tasks),
            "grader": grader, "warnings": list(subj.warnings), "minutes": seconds / 60, "device": device,
            "checkpoints": {name: f"{av} + {ar}" for name, av, ar in subj.nla}
                           | ({"sae": subj.sae.source} if subj.sae is not None else {}),
            "machine": f"{os.cpu_count()} cores ({platform.machine()}), "
                       f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, "
                       f"torch {torch.__version__}, {torch.get_num_threads()} threads",
            "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "command": "nla-audit " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "nla-audit" else
                       " ".join(sys.argv)}


def append_benchmarks(path: Path, headline: list[str], info: dict, out: Path) -> None:
    """Append the headline table (atomically: the old file stays whole if anything fails)."""
    from nla_audit.atomic import atomic_write_text
    from nla_audit.evals._report import FOOTNOTE

    old = path.read_text(encoding="utf-8") if path.exists() else (
        "# Benchmarks\n\nEvery entry is appended by a script or command; rerun it to reproduce.\n")
    block = ["", "### nla-audit bench: NLA vs SAE with floors and ceilings", "",
             f"- command: `{info['command']}`", f"- machine: {info['machine']}", f"- date: {info['date']}",
             f"- site: {info['site']}; checkpoints: " + "; ".join(f"{k} = `{v}`" for k, v in info["checkpoints"].items()),
             f"- held-out: {info['data']}; {info['heldout_check']}",
             f"- AV decoding {info['decoding']}, max_new_tokens {info['max_new_tokens']}; eval items per group: "
             f"{info['limit'] or 'all'}; grader: {info['grader']}; run took {info['minutes']:.1f} min", ""]
    block += headline
    block += ["", f"- {FOOTNOTE.format(b_rv=info['b_rv'], device=info['device'])}"]
    block += [f"- warning: {w}" for w in info["warnings"]]
    block += [f"- full report: `{out}/report.md` (tables with every grader and group, PNGs, results.parquet, logs)", ""]
    atomic_write_text(path, old.rstrip("\n") + "\n" + "\n".join(block) + "\n")


# ------------------------------------------------------------------------------------------------ CLI
def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark NLA checkpoints against the SAE baseline, floors and ceilings")
    p.add_argument("--nla", action="append", nargs=3, metavar=("NAME", "AV", "AR"), default=[],
                   help="an NLA checkpoint (repeatable); default: the shipped NLA as 'default'")
    p.add_argument("--sae", default="default", help="SAE folder, 'default' (the shipped SAE) or 'none'")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help="comma list of eval tasks, or 'none' for reconstruction only")
    p.add_argument("--references", default="probe,text", help="ceilings/readers run once: probe,text (or 'none')")
    p.add_argument("--no-floor", action="store_true", help="skip the shuffled-activation floors")
    p.add_argument("--data", default=None, help="held-out activation parquet (default: test split of --corpus)")
    p.add_argument("--max-rows", type=int, default=None, help="at most N rows of --data")
    p.add_argument("--corpus", default="default", help="corpus whose test split is the held-out data")
    p.add_argument("--docs", type=int, default=60, help="held-out documents to extract (default 60)")
    p.add_argument("--positions", type=int, default=2, help="positions per held-out document (default 2)")
    p.add_argument("--limit", type=int, default=40, help="eval items per group (default 40; 0 = all)")
    p.add_argument("--probe-train", type=int, default=None)
    p.add_argument("--temperature", type=float, default=0.0, help="AV sampling temperature (0 = greedy)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--grader", default="embed", choices=["embed", "claude", "both"])
    p.add_argument("--grader-model", default="anthropic/claude-haiku-4-5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-time", action="append", nargs=2, metavar=("NAME", "SECONDS"), default=[],
                   help="training wall time of a checkpoint whose sidecar does not record it")
    p.add_argument("--out", default="bench-report", help="report folder (replaced whole when the run succeeds)")
    p.add_argument("--benchmarks", default="BENCHMARKS.md",
                   help="markdown file the headline table is appended to with --append (default BENCHMARKS.md)")
    p.add_argument("--append", action="store_true",
                   help="append the headline table to --benchmarks (default: print it and write the report only)")
    p.add_argument("--no-append", action="store_true", help=argparse.SUPPRESS)  # the old default's opt-out: a no-op
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args) -> BenchConfig:
    from nla_audit.evals.cli import check_grader

    def names(spec: str) -> tuple[str, ...]:
        return () if spec.strip().lower() == "none" else tuple(t.strip() for t in spec.split(",") if t.strip())

    try:
        train_time = tuple((n, float(s)) for n, s in args.train_time)
    except ValueError:
        raise InputError(f"--train-time {args.train_time}", expected="NAME SECONDS with SECONDS a number") from None
    check_grader(args)
    grader = {"claude": "model"}.get(args.grader, args.grader)
    return BenchConfig(nla=tuple(tuple(x) for x in args.nla) or None, sae=None if args.sae.lower() == "none" else args.sae,
                       tasks=names(args.tasks), references=names(args.references), floors=not args.no_floor,
                       data=args.data, max_rows=args.max_rows, corpus=args.corpus, docs=args.docs, positions=args.positions,
                       limit=args.limit or None, probe_train=args.probe_train, temperature=args.temperature,
                       max_new_tokens=args.max_new_tokens, grader=grader,
                       grader_model=args.grader_model if grader != "embed" else None, seed=args.seed,
                       out=args.out, benchmarks=args.benchmarks if args.append and not args.no_append else None,
                       train_time=train_time, device=args.device)


def run(args) -> int:
    run_bench(config_from_args(args), progress=not args.quiet)
    return 0
