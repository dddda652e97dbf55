"""Do averages of one GRPO run's checkpoints read better than its last one? AR prediction ensembles and an
exact AV weight soup, single-sample fve_nrm, paired, on training-split rows the RL stage never sampled.

Finished experiment, run 2026-11-23 17:50 UTC, commit 186e348 (BENCHMARKS.md "Checkpoint averages of one GRPO
run: AR ensembles and an AV soup"; docs/results/checkpoint-averages.md). Answer: No. On the shipped rl2 run's
exports (s65, s135, s190), older ARs lose 0.010-0.014 and the mean of the three ARs' predictions 0.004 against
the last AR; the exact AV soup is flat, -0.007 [-0.017, +0.003]. Neither is a single-sample lever.

Why: averaging checkpoints along a trajectory (weight soups, EMA) is a cheap, single-sample lever that needs
no training. Two forms: the ARs of the run's checkpoints reading the last AV's explanations, their predictions
averaged; and the AV soup, the mean of the AVs' merged LoRA deltas, built exactly as one adapter of the summed
rank (A stacked, B stacked and divided by n, alpha scaled with the rank). Rows: a seeded draw of documents
from the AR-SFT and AV-SFT splits (SFT read them with teacher text; GRPO never sampled them), never the test
split, so a winner would then be scored on the test split by ``benchmarks/fve.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))  # _common
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def soup_adapter(srcs: list[Path], out: Path) -> Path:
    """Write the exact mean of the adapters' merged deltas (B·A) as one adapter; sidecar from the last source."""
    import torch
    import yaml
    from safetensors.torch import load_file, save_file

    parts, n = [load_file(p / "adapter.safetensors") for p in srcs], len(srcs)
    soup = {k: torch.cat([t[k] for t in parts], 0) if k.endswith("lora_A")
            else torch.cat([t[k].float() / n for t in parts], 1).to(parts[0][k].dtype) for k in parts[0]}
    out.mkdir(parents=True, exist_ok=True)
    save_file(soup, out / "adapter.safetensors")
    meta = yaml.safe_load((srcs[-1] / "nla_meta.yaml").read_text())
    meta["adapter"]["rank"] *= n
    meta["adapter"]["alpha"] *= n  # alpha / rank, the LoRA scaling, unchanged
    (out / "nla_meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", action="append", nargs=2, metavar=("NAME", "DIR"), required=True,
                    help="a checkpoint folder holding av/ and ar/, oldest first; the last is the reference")
    ap.add_argument("--data", nargs="+", default=["runs/nla/data/base.ar_sft.parquet", "runs/nla/data/base.av_sft.parquet"])
    ap.add_argument("--docs", type=int, default=64, help="documents drawn from each parquet")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record
    from decoding_guidance import pick_rows

    from nla_audit.ar import ActivationReconstructor
    from nla_audit.av import ActivationVerbalizer
    from nla_audit.evals._fve import bootstrap_ci
    from nla_audit.metrics import mse_nrm, normalize
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.vectors import read_vectors

    vs, docs = [], []
    for path in args.data:
        if (read_dataset_sidecar(path).get("split") or {}).get("name") == "test":
            sys.exit(f"error: {path} is the test split; compare checkpoints on training-split rows")
        vecs, cols = read_vectors(path, ["doc_id"])
        rows = pick_rows(list(cols["doc_id"]), args.docs, 2, seed=1)
        vs.append(torch.from_numpy(vecs[rows].copy()))
        docs += [cols["doc_id"][i] for i in rows]
    v = torch.cat(vs)
    names, dirs = [c[0] for c in args.ckpt], [Path(c[1]) for c in args.ckpt]
    ars = {n: ActivationReconstructor.from_pretrained(d / "ar", dtype="float32") for n, d in zip(names, dirs)}
    last = ars[names[-1]]
    base, s = last.meta.fve_baseline(), last.meta.mse_scale

    def explain(av_dir: Path) -> list[str]:
        av = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
        ex = av.explain(v, max_new_tokens=args.max_new_tokens, temperature=args.temperature, batch_size=32, seed=0)
        return [e.text for e in ex]

    def fve(pred: torch.Tensor):
        return (1 - mse_nrm(pred, v, s) / base).numpy()

    texts = explain(dirs[-1] / "av")
    preds = {n: normalize(ar.reconstruct(texts), s) for n, ar in ars.items()}
    ref = fve(preds[names[-1]])
    rows = {f"{names[-1]} AV + {n} AR": fve(p) for n, p in preds.items()}
    rows[f"{names[-1]} AV + mean prediction of the {len(names)} ARs"] = fve(sum(preds.values()) / len(names))
    with tempfile.TemporaryDirectory() as tmp:
        soup = soup_adapter([d / "av" for d in dirs], Path(tmp) / "av")
        rows[f"AV soup of {', '.join(names)} + {names[-1]} AR"] = fve(last.reconstruct(explain(soup)))
    lines = ["", "| explainer (one sample each, same rows) | fve_nrm [95% CI] | paired vs the last checkpoint |",
             "|---|---|---|"]
    for label, f in rows.items():
        lo, hi = bootstrap_ci(f, groups=docs)
        d = f - ref
        dlo, dhi = bootstrap_ci(d, groups=docs)
        lines.append(f"| {label} | {f.mean():.3f} [{lo:.3f}, {hi:.3f}] | {d.mean():+.4f} [{dlo:+.4f}, {dhi:+.4f}] |")
    record("Checkpoint averages of one GRPO run: AR ensembles and an AV soup",
           [(f"- rows: {len(v)} activations, 2 from each of {args.docs} seeded documents of "
             f"{', '.join(args.data)} (training split; GRPO never sampled them); T {args.temperature}, seed 0, "
             f"max_new_tokens {args.max_new_tokens}, fp32"), *lines], args.append)


if __name__ == "__main__":
    main()
