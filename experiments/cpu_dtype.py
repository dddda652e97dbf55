"""Training speed on the CPU by base-weight dtype: why CPU training defaults to fp32 (``base_dtype: auto``).

Finished experiment, run 2026-11-23 03:52 UTC, commit a48b0bf (BENCHMARKS.md "CPU training speed by base
dtype"; docs/results/cpu-vs-gpu.md). Answer: On this AVX2-only 2-core CPU a bf16 forward + backward runs 30.7x
slower than fp32 (graph-free forward 5.6x, decoding at par), hence training's `base_dtype: auto` (fp32 on the
CPU, bf16 on CUDA).

SFT and GRPO keep LoRA factors and the AR head in fp32 and the frozen base in ``base_dtype``. bf16 halves the
base's memory, and on CUDA it is the fast path; on a CPU without native bf16 instructions (no AVX512-BF16/AMX,
e.g. AMD Zen 3) PyTorch emulates bf16 matmuls, and the backward pass is the worst hit. This times, for each
dtype, the pieces a GRPO step is made of on the shipped AV: a forward + backward through the LoRA-wrapped
model (policy update; SFT is the same pass), a graph-free forward (reference log-probs), and sampled decoding
(rollouts). One warm-up, then the best of ``--repeats``; the figure is each piece's bf16 / fp32 time ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))  # _common
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line.split(":", 1)[1].split() for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    native = [f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2")]
    return ", ".join(native) or "none of avx2/avx512f/avx512_bf16/amx_bf16"


def _best(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks kernels on first use)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _time_pieces(lm, eos: int, ids, args) -> dict[str, float]:
    """Seconds for each piece of a GRPO step on ``lm``: policy pass, reference pass, sampled decoding."""
    import torch

    from nla_audit.training.grpo import token_logprobs

    attn = lab = torch.ones_like(ids)

    def train_pass():
        lm.zero_grad(set_to_none=True)
        token_logprobs(lm, ids, attn, lab).mean().backward()

    def frozen_pass():
        with torch.no_grad():
            token_logprobs(lm, ids, attn, lab)

    def decode():
        with torch.no_grad():
            lm.generate(input_ids=ids[:, :16], attention_mask=attn[:, :16], do_sample=True, top_k=0,
                        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=eos)

    return {k: _best(f, args.repeats) for k, f in
            (("forward + backward", train_pass), ("forward, no graph", frozen_pass), ("decode", decode))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--av", default="nla_audit/data/nla/smollm2-135m-instruct/av")
    ap.add_argument("--model", default="default")
    ap.add_argument("--rows", type=int, default=4, help="sequences per pass")
    ap.add_argument("--length", type=int, default=96, help="tokens per sequence (a GRPO rollout + prompt is ~100)")
    ap.add_argument("--new-tokens", type=int, default=32, help="decoded tokens per row in the rollout piece")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record

    from nla_audit.models import resolve_dtype
    from nla_audit.training.nla_models import build_av

    torch.manual_seed(0)
    ids = torch.randint(100, 20000, (args.rows, args.length))
    res: dict[str, dict[str, float]] = {}
    for name in args.dtypes.split(","):
        lm, tok = build_av(args.model, 0, 0, "cpu", init_from=args.av, dtype=resolve_dtype(name, "cpu"))
        res[name] = _time_pieces(lm, tok.eos_token_id, ids, args)
        print(name, {k: round(v, 2) for k, v in res[name].items()}, flush=True)
    names = list(res)
    ref = names[0]
    lines = [(f"- CPU flags: {_cpu_flags()}; shipped AV (LoRA over the embedded model); {args.rows} × {args.length} "
              f"tokens per pass, decode {args.rows} rows × {args.new_tokens} new tokens; best of {args.repeats} "
              "after a warm-up"),
             "", "| piece | " + " | ".join(f"{n} (s)" for n in names) + " | " +
             " | ".join(f"{n} / {ref}" for n in names[1:]) + " |",
             "|---" * (1 + 2 * len(names) - 1) + "|"]
    for piece in res[ref]:
        lines.append(f"| {piece} | " + " | ".join(f"{res[n][piece]:.2f}" for n in names) + " | " +
                     " | ".join(f"**{res[n][piece] / res[ref][piece]:.1f}×**" for n in names[1:]) + " |")
    record("CPU training speed by base dtype", lines, args.append)


if __name__ == "__main__":
    main()
