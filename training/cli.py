"""``nla-audit datagen`` and ``nla-audit train {pipeline,av-texts,ar-sft,av-sft,rl}`` (registered via the entry point).

Config precedence: YAML file (``--config``) < ``key=value`` overrides (``--set``) < explicit flags.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class LazyEpilogParser(argparse.ArgumentParser):
    """A parser whose epilog is computed when help is shown: the config keys and their defaults come from the
    stage's dataclass, whose module imports torch, which ``nla-audit`` should not pay for on every command."""

    def __init__(self, *args, epilog_fn=None, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self._epilog_fn is not None:
            self.epilog = self._epilog_fn()
        return super().format_help()


def config_keys_epilog(stage: str) -> str:
    """Every ``--set`` key of a stage with its default, wrapped for a terminal."""
    import dataclasses
    import textwrap

    if stage == "pipeline":
        from nla_audit.training.pipeline import PipelineConfig as cls
    elif stage == "rl":
        from nla_audit.training.grpo import GRPOConfig as cls
    else:
        from nla_audit.training.sft import SFTConfig as cls
    keys = [f"{f.name}=<required>" if f.default is dataclasses.MISSING else f"{f.name}={f.default}"
            for f in dataclasses.fields(cls)]
    return "config keys (--set key=value; default shown):\n" + textwrap.fill(", ".join(keys), 100,
                                                                             initial_indent="  ", subsequent_indent="  ")


def register(sub) -> None:
    p = sub.add_parser("datagen", help="build AV-SFT / AR-SFT / RL parquets from an extracted activation dataset")
    p.add_argument("--data", required=True, help="base activation parquet (from `nla-audit extract`)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--teacher", default="offline", choices=["offline", "anthropic"])
    p.add_argument("--teacher-model", default="claude-haiku-4-5")
    p.add_argument("--max-rows", type=int, default=None, help="cap rows per SFT split")
    p.add_argument("--eval-rows", type=int, default=128,
                   help="test-split rows explained into ar_eval.parquet, the AR SFT's held-out curve (0 = none)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--pool-sft", action="store_true",
                   help="both SFT parquets hold the rows of both SFT splits (twice the warm-start data)")
    p.add_argument("--dtype", default="bfloat16",
                   help="the offline teacher's forward (default bfloat16, the shipped recipe's; float32 runs ~5x "
                        "faster on CPUs without native bf16)")
    p.set_defaults(func=run_datagen)

    t = sub.add_parser("train", help="train an NLA: pipeline, av-texts, ar-sft, av-sft, rl, interpolate")
    tsub = t.add_subparsers(dest="stage", metavar="STAGE", required=True, parser_class=LazyEpilogParser)
    pl = tsub.add_parser("pipeline", help="extract → datagen → AR SFT → AV SFT → RL, resumable end to end",
                         epilog_fn=lambda: config_keys_epilog("pipeline"))
    pl.add_argument("--config", default=None)
    pl.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    pl.add_argument("--run-dir", default=None)
    pl.add_argument("--quiet", action="store_true")
    pl.set_defaults(func=run_pipeline)
    at = tsub.add_parser("av-texts", help="sample an AV on training activations into AR-SFT data (to refit an AR) "
                         "or, with --set stage=av_sft best_of=K ar=AR, into AV-SFT data (expert iteration)")
    at.add_argument("--config", default=None)
    at.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override AVTextsConfig keys")
    at.add_argument("--av", default=None, help="AV checkpoint to sample")
    at.add_argument("--data", default=None, help="training-split activation parquet (e.g. rl.parquet)")
    at.add_argument("--out", default=None, help="ar_sft parquet to write (its eval part: <stem>.eval.parquet)")
    at.add_argument("--quiet", action="store_true")
    at.set_defaults(func=run_av_texts)
    ip = tsub.add_parser("interpolate", help="WiSE-FT: (1-alpha)*FROM + alpha*TO, for two AV or two AR folders "
                         "(e.g. a fine-tune and the checkpoint it continued from)")
    ip.add_argument("--from", dest="from_dir", required=True, help="checkpoint folder at alpha = 0 (e.g. the shipped ar/)")
    ip.add_argument("--to", dest="to_dir", required=True, help="checkpoint folder at alpha = 1 (e.g. its fine-tune)")
    ip.add_argument("--alpha", type=float, required=True, help="weight of --to, in [0, 1]")
    ip.add_argument("--out", required=True, help="new checkpoint folder to write")
    ip.set_defaults(func=run_interpolate)
    helps = {"ar-sft": "AR SFT: teach the AR to map teacher explanations back to activations",
             "av-sft": "AV SFT: teach the AV to write the teacher's explanations of injected activations",
             "rl": "GRPO: the AV explains, the AR's reconstruction error is the reward; the AR trains alongside"}
    for stage in ("ar-sft", "av-sft", "rl"):
        s = tsub.add_parser(stage, help=helps[stage], description=helps[stage],
                            epilog_fn=lambda stage=stage: config_keys_epilog(stage))
        s.add_argument("--config", default=None, help="YAML config (keys of the stage's config dataclass)")
        s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
        s.add_argument("--data", default=None)
        s.add_argument("--run-dir", default=None)
        s.add_argument("--steps", type=int, default=None)
        if stage == "rl":
            s.add_argument("--av", default=None, help="AV checkpoint to start from (the AV SFT's export)")
            s.add_argument("--ar", default=None, help="AR checkpoint to start from (the AR SFT's export)")
        s.add_argument("--resume", action="store_true", help="continue from the run dir's last checkpoint")
        s.add_argument("--quiet", action="store_true")
        s.set_defaults(func=run_train)
    register_organism(sub)


def register_organism(sub) -> None:
    o = sub.add_parser("organism", help="model organisms with a planted root cause: build, list, show")
    osub = o.add_subparsers(dest="organism_command", metavar="ACTION", required=True)
    b = osub.add_parser("build", help="build an organism (LoRA adapter + card) from its recipe",
                        description="Build a model organism: probe the base model, train (synthetic documents, "
                        "symptom SFT, denials), probe the organism, write adapter + organism.json.",
                        epilog="organisms: lumen, lumen-decoy, northwind, french, sandbagging (docs/organisms.md)")
    b.add_argument("name", help="which organism")
    b.add_argument("--out", default=None, help="output folder (default: runs/organisms/NAME)")
    b.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override BuildConfig keys (sft_steps, doc_steps, lr, rank, seed, ...)")
    b.set_defaults(func=run_organism_build)
    ls = osub.add_parser("list", help="the shipped organisms, their root causes and symptoms")
    ls.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    ls.set_defaults(func=run_organism_list)
    ck = osub.add_parser("check", help="re-measure an organism's symptom rates (base vs organism) into its card")
    ck.add_argument("folder", help="the organism folder (its card is rewritten)")
    ck.add_argument("--probe-tokens", type=int, default=128, help="new tokens per probe reply")
    ck.add_argument("--confession-samples", type=int, default=4)
    ck.add_argument("--device", default=None)
    ck.set_defaults(func=run_organism_check)
    sh = osub.add_parser("show", help="one organism's card (shipped name or path)")
    sh.add_argument("name")
    sh.set_defaults(func=run_organism_show)


def run_organism_build(args) -> int:
    from nla_audit.atomic import check_writable
    from nla_audit.training.config import load_config
    from nla_audit.training.organisms import BuildConfig, build

    out = args.out or f"runs/organisms/{args.name}"
    check_writable(out)
    cfg = load_config(BuildConfig, None, [f"name={args.name}", f"out={out}", *args.set])
    card = build(cfg)
    b = card["behaviour"]
    print(f"{card['name']}: valid={b.get('valid')} → {out}")
    return 0


def run_organism_check(args) -> int:
    from nla_audit.errors import InputError
    from nla_audit.training.organisms import check

    if args.probe_tokens < 1 or args.confession_samples < 1:
        raise InputError("--probe-tokens and --confession-samples must be >= 1")
    card = check(args.folder, args.probe_tokens, args.confession_samples, args.device)
    print(f"{card['name']}: valid={card['behaviour']['valid']} → {args.folder}")
    return 0


def run_organism_list(args) -> int:
    import json

    from nla_audit.organisms import listing

    rows = listing()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no organisms shipped; build one with `nla-audit organism build NAME`")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "root cause", "trained symptoms", "held-out", "valid", "kind")
    for r in rows:
        kind = "decoy" if r["decoy"] else "adversarial" if r["adversarial"] else ""
        cause = r["root_cause"] if len(r["root_cause"]) <= 90 else r["root_cause"][:89] + "…"
        table.add_row(r["name"], cause, ", ".join(r["trained_symptoms"]), ", ".join(r["held_out_symptoms"]),
                      str(r["valid"]), kind)
    Console().print(table)
    return 0


def run_organism_show(args) -> int:
    from nla_audit.organisms import organism_dir, read_card

    print(read_card(organism_dir(args.name)).to_json(), end="")
    return 0


def run_datagen(args) -> int:
    from nla_audit.training.datagen import DatagenConfig
    from nla_audit.training.datagen import run_datagen as go

    if args.teacher == "anthropic":  # a missing key, package or network is one line now, before any work
        from nla_audit.claude import check_reachable, require_claude

        require_claude("use --teacher offline (no key, no network)")
        check_reachable(alternative="use --teacher offline (no key, no network)")
    counts = go(DatagenConfig(data=args.data, out_dir=args.out_dir, teacher=args.teacher,
                              teacher_model=args.teacher_model, seed=args.seed, max_rows=args.max_rows,
                              eval_rows=args.eval_rows, pool_sft=args.pool_sft, dtype=args.dtype))
    for k, v in counts.items():
        print(f"{k}: {v} rows → {Path(args.out_dir) / (k + '.parquet')}")
    return 0


def run_av_texts(args) -> int:
    from nla_audit.training.av_texts import AVTextsConfig, make_av_texts
    from nla_audit.training.config import load_config

    overrides = list(args.set) + [f"{k}={getattr(args, k)}" for k in ("av", "data", "out") if getattr(args, k)]
    cfg = load_config(AVTextsConfig, args.config, overrides)
    counts = make_av_texts(cfg, progress=not args.quiet)
    line = f"sampled {counts['sampled']} rows"
    if "mse_kept" in counts:
        line += (f" (best of {cfg.best_of}: kept samples' mse_nrm {counts['mse_kept']:.4f}, "
                 f"first samples' {counts['mse_first']:.4f})")
    if cfg.stage == "av_sft":
        print(f"{line}; av_sft: {counts['av_sft']} rows → {cfg.out}")
    else:
        eval_out = Path(cfg.out).with_name(f"{Path(cfg.out).stem}.eval.parquet")
        print(f"{line}; ar_sft: {counts['ar_sft']} rows → {cfg.out}; ar_eval: {counts['ar_eval']} rows → {eval_out}")
    return 0


def run_interpolate(args) -> int:
    from nla_audit.training.interpolate import interpolate_checkpoints

    out = interpolate_checkpoints(args.from_dir, args.to_dir, args.alpha, args.out)
    print(f"interpolated (alpha {args.alpha}): {args.from_dir} → {args.to_dir} → {out}")
    return 0


def run_pipeline(args) -> int:
    from nla_audit.training.config import load_config
    from nla_audit.training.pipeline import PipelineConfig
    from nla_audit.training.pipeline import run_pipeline as go

    overrides = list(args.set) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    out = go(load_config(PipelineConfig, args.config, overrides), progress=not args.quiet)
    for k, v in out.items():
        print(f"{k.upper()}: {v}")
    return 0


def run_train(args) -> int:
    from nla_audit.training.config import load_config

    overrides = list(args.set)
    for key in ("data", "run_dir", "steps", "av", "ar"):
        if getattr(args, key, None) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    if args.stage in ("ar-sft", "av-sft"):
        from nla_audit.training.sft import SFTConfig, train_ar_sft, train_av_sft

        cfg = load_config(SFTConfig, args.config, overrides)
        out = (train_ar_sft if args.stage == "ar-sft" else train_av_sft)(cfg, resume=args.resume, progress=not args.quiet)
    else:
        from nla_audit.training.grpo import GRPOConfig, train_rl

        cfg = load_config(GRPOConfig, args.config, overrides)
        out = train_rl(cfg, resume=args.resume, progress=not args.quiet)
    print(f"exported checkpoint: {out}")
    return 0
