"""GRPO rollout speed: sampling from the LoRA-wrapped AV vs from its merged twin (``merged_sampler``).

Rollouts are most of a GPU GRPO step (session 9: 7.6 of 9.5 s). On a 135M model decoding is bound by kernel
launches, and each LoRA-wrapped projection adds five launches to the base matmul's one, so a merged twin
(re-synced each step, sync time included here) should sample faster. Both variants go through
``training.grpo._rollouts`` (the training code path) with the same seed, on real activations.
``--static`` adds a third variant on CUDA: the twin with HF's static KV cache (auto-compiled decode).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _vectors(data: str | None, n: int, target_model: str):
    import tempfile

    import torch

    from nla_audit.vectors import read_vectors

    if data:
        return torch.from_numpy(read_vectors(data)[0][:n].copy())
    from nla_audit.extract import ExtractConfig, extract_activations

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "v.parquet")
        extract_activations(ExtractConfig(out=out, model=target_model, max_docs=n, positions_per_doc=1,
                                          min_position=10), progress=False)
        return torch.from_numpy(read_vectors(out)[0][:n].copy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--av", default="nla_audit/data/nla/smollm2-135m-instruct/av", help="AV checkpoint (LoRA adapter)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=None, help="activation parquet at the NLA's layer (default: extract a few)")
    ap.add_argument("--rollouts", type=int, default=32, help="rollouts per batch (GPU GRPO: 256)")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--static", action="store_true", help="also time the twin with a static KV cache (CUDA)")
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record

    from nla_audit.injection import av_prompt_ids
    from nla_audit.lora import merged_copy, sync_merged
    from nla_audit.models import resolve_device, resolve_dtype
    from nla_audit.sidecar import read_model_sidecar
    from nla_audit.training.grpo import _clock, _rollouts
    from nla_audit.training.nla_models import build_av

    dev = torch.device(resolve_device(None))
    # the base dtype GRPO uses by default: bf16 on CUDA, fp32 on the CPU
    dt = resolve_dtype("auto", str(dev))
    lm, tok = build_av(args.model, 0, 0, str(dev), init_from=args.av, dtype=dt)
    meta = read_model_sidecar(args.av, "av")
    prompt = av_prompt_ids(tok, meta.av_template, meta.tokens.injection_char)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    v = _vectors(args.data, args.rollouts, args.model).to(dev)
    v = v.repeat(-(-args.rollouts // len(v)), 1)[: args.rollouts]
    twin = merged_copy(lm)
    variants = {"lora": (lambda: lm, {}), "merged": (lambda: sync_merged(lm, twin), {})}
    if args.static and dev.type == "cuda":
        variants["merged+static"] = (lambda: sync_merged(lm, twin), {"cache_implementation": "static"})
    res = {}
    for name, (model_fn, kw) in variants.items():
        torch.manual_seed(0)
        _rollouts(model_fn(), tok, prompt, meta.tokens, v[:8], meta.injection_scale, 1.0, 8, pad, **kw)  # warm-up
        times, toks = [], 0
        for r in range(args.repeats):
            torch.manual_seed(r)
            t0 = _clock(dev)
            resp, *_ = _rollouts(model_fn(), tok, prompt, meta.tokens, v, meta.injection_scale, 1.0,
                                 args.max_new_tokens, pad, **kw)
            times.append(_clock(dev) - t0)
            toks += sum(len(x) for x in resp)
        res[name] = (min(times), toks / args.repeats)
        print(f"{name}: best of {args.repeats} {min(times):.2f} s per {args.rollouts} rollouts, "
              f"mean {toks / args.repeats / args.rollouts:.0f} tokens each", flush=True)
    base = res["lora"][0]
    record("GRPO rollout speed: LoRA AV vs merged twin", [
        (f"- AV: {args.av} ({str(dt).removeprefix('torch.')} base on {dev.type}); {args.rollouts} rollouts "
         f"at T 1.0, max_new_tokens "
         f"{args.max_new_tokens}, best of {args.repeats}, same seeds; sync time included"),
        *[f"- {k}: {t:.2f} s per batch ({n / args.rollouts:.0f} tokens per rollout); **{base / t:.2f}x** the LoRA AV"
          for k, (t, n) in res.items()],
    ], args.append)


if __name__ == "__main__":
    main()
