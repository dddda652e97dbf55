"""SAE baseline for the embedded default (SmolLM2-135M-Instruct, layer 20): train with SAELens (or load), then
held-out reconstruction (mse, mse_nrm, fve_nrm, L0, dead latents), training time, labelling time and explainer
throughput.

Data: the pipeline's document-level splits of the default corpus (``runs/nla/data/base.*.parquet``, written by
``nla-audit train pipeline`` or ``nla-audit extract`` + ``nla-audit split``): trains on av_sft + ar_sft + rl,
holds out test, the same documents the NLA never trains on.

This script measures; it never writes the package data. The SAE is trained into a temporary folder (or
``--out``); ``--load`` evaluates an existing one (``default`` = the shipped SAE), labelling a copy so the
folder is left as it was. Building the shipped SAE is two CLI commands (docs/sae.md, "Shipped default"):

    D=runs/nla/data; S=nla_audit/data/sae/smollm2-135m-instruct-L20
    nla-audit sae train --data $D/base.av_sft.parquet --data $D/base.ar_sft.parquet --data $D/base.rl.parquet \
        --held-out $D/base.test.parquet --steps 500 --dtype bfloat16 --out $S
    nla-audit sae label --sae $S --data $D/base.av_sft.parquet --data $D/base.ar_sft.parquet \
        --data $D/base.rl.parquet --contexts 5 --labeller offline

    python benchmarks/sae.py --steps 500 --dtype bfloat16 [--append]     # the shipped recipe, measured
    python benchmarks/sae.py --load default [--append]                   # the shipped SAE, measured
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="runs/nla/data", help="folder with base.{av_sft,ar_sft,rl,test}.parquet")
    ap.add_argument("--out", default=None, help="keep the trained SAE in this folder (default: a temporary one)")
    ap.add_argument("--load", default=None,
                    help="evaluate this existing SAE folder ('default' = the shipped one) instead of training")
    ap.add_argument("--ship", action="store_true", help=argparse.SUPPRESS)  # moved to the CLI: see the docstring
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights on disk (the shipped SAE: bfloat16)")
    ap.add_argument("--arch", default="topk")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--expansion", type=int, default=4)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()
    if args.ship:
        sys.exit("benchmarks/sae.py no longer writes the shipped SAE: build it with `nla-audit sae train ... "
                 "--dtype bfloat16 --out nla_audit/data/sae/smollm2-135m-instruct-L20` and `nla-audit sae label` "
                 "(docs/sae.md, 'Shipped default'), then measure it with `python benchmarks/sae.py --load default`")
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, Path(tmp), load_at_start)


def measure(args: argparse.Namespace, tmp: Path, load_at_start: float) -> None:
    """Train (into ``--out`` or ``tmp``) or copy ``--load`` into ``tmp``, label, time the explainer, report."""
    import torch
    from _common import record

    from nla_audit.baselines.sae import SAEExplainer, load_sae, resolve_sae_dir
    from nla_audit.baselines.sae_labels import label_sae
    from nla_audit.baselines.sae_train import (
        SAETrainConfig,
        evaluate_sae,
        format_metrics,
        load_site_vectors,
        train_sae,
    )
    from nla_audit.metrics import baselines, default_mse_scale

    data = Path(args.data_dir)
    train_files = [str(data / f"base.{s}.parquet") for s in ("av_sft", "ar_sft", "rl")]
    held_out = str(data / "base.test.parquet")
    if not all(Path(p).exists() for p in [*train_files, held_out]):
        sys.exit(f"missing {data}/base.*.parquet: run `nla-audit train pipeline --run-dir runs/nla` (or extract + split)")
    if args.load:
        out = tmp / "sae"
        shutil.copytree(resolve_sae_dir(args.load), out)  # labelled below: the loaded folder stays as it was
        sae, meta, _ = load_sae(out)
        train = load_site_vectors(train_files)
        b_rv = baselines(train.vectors, default_mse_scale(train.site.d_model))["baseline_rawvar"]
        ev = evaluate_sae(sae, load_site_vectors([held_out], train.site).vectors, b_rv)
        m = {"eval": ev, "arch": meta.get("config", {}).get("arch", "?"), "d_sae": sae.cfg.d_sae,
             "k": meta.get("config", {}).get("k", "?"), "training": None, "baseline_rawvar": b_rv}
    else:
        out = Path(args.out) if args.out else tmp / "sae"
        cfg = SAETrainConfig(data=tuple(train_files), out=str(out), held_out=held_out, arch=args.arch, k=args.k,
                             expansion=args.expansion, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             dtype=args.dtype)
        m = train_sae(cfg)
        print(format_metrics(m))
    t0 = time.perf_counter()
    summary = label_sae(out, train_files, n_contexts=5)
    label_s = time.perf_counter() - t0
    explainer = SAEExplainer.from_dir(out)
    vecs = load_site_vectors([held_out]).vectors
    t0 = time.perf_counter()
    texts = explainer.describe(vecs)
    explain_rate = len(texts) / (time.perf_counter() - t0)
    size = folder_mb(out)

    e, t = m["eval"], m["training"]
    lines = [
        f"- data: SmolLM2-135M-Instruct layer 20 (d_model 576), default corpus; trained on the av_sft+ar_sft+rl "
        f"splits, evaluated on {e['n']} activations of the held-out test split (document-level split)",
        "",
        "| SAE | held-out mse | mse_nrm | fve_nrm mean (median) | fve_raw | cos | L0 | dead latents | training |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| SAELens {m['arch']}, d_sae {m['d_sae']}, k {m['k']} | {e['mse']:.3g} | {e['mse_nrm']:.4f} | "
        f"{e['fve_nrm']:.4f} ({e['fve_nrm_median']:.4f}) | {e['fve_raw']:.4f} | {e['cos']:.4f} | {e['l0']:.1f} | "
        f"{100 * e['dead_frac']:.1f}% | " + (f"{t['steps']} steps × {t['samples'] // t['steps']} "
                                             f"({t['epochs']:.1f} epochs), {t['seconds']:.0f} s |" if t else "loaded |"),
        "",
        (f"- same metrics on {m['train_subset']['n']} training activations: fve_nrm {m['train_subset']['fve_nrm']:.4f}, "
         f"dead latents {100 * m['train_subset']['dead_frac']:.1f}% (the gap to held-out is overfitting to ~22k rows)"
         if m.get("train_subset") else "- training-set metrics: n/a (loaded SAE)"),
        f"- fve_nrm uses the NLA's definition (mse_scale √d, B_rv = {m['baseline_rawvar']:.4f} from "
        "the training vectors), so it compares directly with NLA rows; fve_raw is SAELens's explained variance",
        f"- labels: {summary['n_labelled']} of {summary['d_sae']} latents labelled by the offline proxy in "
        f"{label_s:.0f} s; SAE explainer {explain_rate:,.0f} activations/s; folder {size:.1f} MB"
        + (f" (loaded: {args.load})" if args.load else f" ({args.dtype} weights)"),
        f"- 1-min load average at start {load_at_start:.1f} on {os.cpu_count()} cores (other jobs sharing the CPU "
        f"make the training time an upper bound); torch threads {torch.get_num_threads()}",
    ]
    record("SAE baseline on the embedded default", lines, args.append)


if __name__ == "__main__":
    main()
