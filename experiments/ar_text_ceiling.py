"""How much an AR of the shipped architecture can read from text: AR SFT on the verbatim text prefix.

Finished experiment, run 2026-11-22 22:21 UTC, commit eab5f6e (BENCHMARKS.md "AR reading the verbatim text
prefix: a ceiling for the AR"; docs/results/ar-diagnostics.md). Answer: The AR is not the bottleneck: on the
verbatim prefix the rank-16 AR reads 0.563 / 0.623 / 0.640 held-out at 200 / 400 / 600 steps, still rising,
past the ~0.61 plateau of the same AR on the teacher's text. What the AV is taught to write limits fve_nrm.

The held-out fve_nrm of an NLA is bounded by two things: what the AV's explanation says about the activation,
and how much of that the AR can turn back into the vector. The offline teacher's own text (last ~14 words,
final token, the model's next-token guesses) is what the AV imitates; an AR trained on it reads ~0.6 held-out
("AR SFT held-out curve"). This trains the same AR (LoRA rank 16 on the truncated backbone + d×d head, same
optimiser and batch) on the last ``--chars`` characters of the text prefix itself instead, and logs the same
held-out rows' fve_nrm. If it climbs well past the teacher-text AR, the AR is not the bottleneck: the text the
AV is taught to write is. A diagnostic ceiling, not an NLA score (no AV is involved, and the text is the truth).

Reads datagen's ``ar_sft.parquet`` and ``ar_eval.parquet`` (held-out rows, never trained on); writes the
prefix-text copies beside ``--run-dir`` and resumes the run if it already has a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))  # _common
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def prefix_text(text: str, chars: int) -> str:
    """The last ``chars`` characters of the prefix with whitespace runs collapsed (what the AR is shown)."""
    return re.sub(r"\s+", " ", text).strip()[-chars:]


def prefix_copy(src: Path, dst: Path, chars: int) -> Path:
    """``src`` with its explanation column replaced by the prefix text; sidecar copied (same site, same rows)."""
    import pandas as pd

    from nla_audit.atomic import atomic_path

    d = pd.read_parquet(src)
    d["explanation"] = d["detokenized_text_truncated"].map(lambda t: prefix_text(t, chars))
    with atomic_path(dst, suffix=".parquet") as tmp:
        d.to_parquet(tmp, index=False)
    shutil.copy(f"{src}.nla_meta.yaml", f"{dst}.nla_meta.yaml")
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, help="datagen output with ar_sft.parquet and ar_eval.parquet")
    ap.add_argument("--diag-dir", required=True, help="where the prefix-text parquets go")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--chars", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    from _common import record

    from nla_audit.training.sft import SFTConfig, train_ar_sft

    data, diag = Path(args.data_dir), Path(args.diag_dir)
    diag.mkdir(parents=True, exist_ok=True)
    train = prefix_copy(data / "ar_sft.parquet", diag / "ar_prefix.parquet", args.chars)
    held = prefix_copy(data / "ar_eval.parquet", diag / "ar_eval_prefix.parquet", args.chars)
    cfg = SFTConfig(data=str(train), run_dir=args.run_dir, steps=args.steps, batch_size=16, eval_data=str(held),
                    eval_every=args.eval_every, eval_rows=128, save_every=100, max_length=256)
    resume = (Path(args.run_dir) / "checkpoint" / "state.pt").exists()
    train_ar_sft(cfg, resume=resume, progress=False)
    rows = [json.loads(x) for x in (Path(args.run_dir) / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval_fve_nrm"]) for r in rows if "eval_fve_nrm" in r]
    setup = (f"- AR: LoRA rank {cfg.lora_rank} + d×d head, batch {cfg.batch_size}, lr {cfg.lr:g} / head {cfg.head_lr:g} "
             f"(the shipped AR's recipe); text = last "
             f"{args.chars} characters of the prefix; held-out: the 128 rows of {data / 'ar_eval.parquet'} (test "
             "split, never trained on), the rows the teacher-text AR's curve uses")
    cost = (f"- wall time {rows[-1]['wall_s'] / 60:.0f} min for {rows[-1]['step']} steps. A diagnostic ceiling for the "
            "AR architecture, not an NLA score: no AV is involved and the text is the truth.")
    lines = [setup,
             "", "| AR SFT step | held-out fve_nrm (AR on the verbatim prefix) |", "|---|---|",
             *[f"| {s} | {f:.3f} |" for s, f in curve],
             "", cost]
    record("AR reading the verbatim text prefix: a ceiling for the AR", lines, args.append)


if __name__ == "__main__":
    main()
