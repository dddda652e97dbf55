"""``nla-audit sae``: the SAE baseline: train (SAELens), label latents, explain activations."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("sae", help="SAE baseline on the NLA's site: train (SAELens), label latents, explain")
    verbs = p.add_subparsers(dest="sae_command", metavar="VERB", required=True)

    t = verbs.add_parser("train", help="train an SAE with SAELens on activation parquets (site from their sidecar)")
    t.add_argument("--data", action="append", required=True, help="activation parquet (repeatable; one site)")
    t.add_argument("--out", required=True, help="SAE folder to write (SAELens format + sae_meta.yaml, metrics.json)")
    t.add_argument("--held-out", default=None, help="activation parquet of held-out documents for the metrics")
    t.add_argument("--arch", default=None, choices=["topk", "batchtopk"], help="default topk")
    t.add_argument("--expansion", type=int, default=None, help="d_sae = expansion x d_model (default 4)")
    t.add_argument("--k", type=int, default=None, help="active latents per activation (batchtopk: mean; default 32)")
    t.add_argument("--steps", type=int, default=None, help="default 1000")
    t.add_argument("--batch-size", type=int, default=None, help="default 512")
    t.add_argument("--lr", type=float, default=None, help="default 2e-3, decayed to 0 over the last 20%% of steps")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="weights on disk (default float32)")
    t.add_argument("--model", default=None, help="refuse data that is not from this base model")
    t.add_argument("--layer", type=int, default=None, help="refuse data that is not from this layer K")
    t.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)

    lab = verbs.add_parser("label", help="top-activating contexts and a label per latent (labels.json)")
    lab.add_argument("--sae", required=True, help="SAE folder ('default' = the shipped one)")
    lab.add_argument("--data", action="append", required=True, help="activation parquet of the SAE's site (repeatable)")
    lab.add_argument("--contexts", type=int, default=8, help="top contexts kept per latent")
    lab.add_argument("--labeller", default="auto", choices=["auto", "offline", "claude"],
                     help="auto: Claude when ANTHROPIC_API_KEY is set, else the offline proxy")
    lab.add_argument("--claude-model", default="claude-haiku-4-5")
    lab.add_argument("--concurrency", type=int, default=8)
    lab.set_defaults(func=run_label)

    e = verbs.add_parser("explain", help="explain activation vectors by their top SAE latents")
    e.add_argument("--sae", default="default", help="SAE folder ('default' = the shipped one)")
    e.add_argument("--vectors", required=True, help="activation parquet of the SAE's site")
    e.add_argument("--limit", type=int, default=8)
    e.add_argument("--top", type=int, default=8, help="latents per explanation")
    e.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    e.set_defaults(func=run_explain)


def run_train(args) -> int:
    from nla_audit.baselines.sae_train import SAETrainConfig, format_metrics, train_sae

    options = ("held_out", "arch", "expansion", "k", "steps", "batch_size", "lr", "seed", "dtype", "model", "layer")
    given = {name: getattr(args, name) for name in options if getattr(args, name) is not None}
    cfg = SAETrainConfig(data=tuple(args.data), out=args.out, **given)  # unset flags keep the config's defaults
    metrics = train_sae(cfg, progress=not args.quiet)
    print(json.dumps(metrics) if args.json else format_metrics(metrics) + f"\nsaved to {args.out}")
    return 0


def run_label(args) -> int:
    from nla_audit.baselines.sae_labels import label_sae, pick_labeller

    labeller = pick_labeller(args.labeller, args.claude_model, args.concurrency)
    if labeller is not None:  # API calls ahead: a missing network is one line now, not after the SAE loads
        from nla_audit.claude import check_reachable
        from nla_audit.errors import InputError

        try:
            check_reachable(alternative="use --labeller offline (a proxy)")
        except InputError as exc:
            if args.labeller != "auto":
                raise
            print(f"{str(exc).split('; fix:')[0]}; labelling with the offline proxy instead (--labeller auto)",
                  file=sys.stderr)
            labeller = None
    summary = label_sae(args.sae, args.data, args.contexts, labeller)
    note = (" (offline proxy: final tokens and shared words; set ANTHROPIC_API_KEY for Claude labels)"
            if summary["proxy"] else "")
    print(f"labelled {summary['n_labelled']} of {summary['d_sae']} latents from {summary['n_rows']} activations "
          f"with {summary['labeller']}{note}; {summary['d_sae'] - summary['n_labelled']} never active")
    return 0


def run_explain(args) -> int:
    import torch

    from nla_audit.baselines.sae import SAEExplainer
    from nla_audit.errors import InputError
    from nla_audit.site import check_same_site
    from nla_audit.vectors import read_vectors

    if args.limit < 1 or args.top < 1:
        raise InputError("--limit and --top must be >= 1")
    explainer = SAEExplainer.from_dir(args.sae, top_n=args.top)
    check_same_site(explainer, args.vectors)
    vecs, cols = read_vectors(args.vectors, ["detokenized_text_truncated"])
    texts = explainer.describe(torch.from_numpy(vecs[: args.limit].copy()))
    for i, text in enumerate(texts):
        context = (cols["detokenized_text_truncated"][i] or "")[-80:]
        if args.json:
            print(json.dumps({"row": i, "context": context, "explanation": text}, ensure_ascii=False))
        else:
            print(f"--- row {i}: …{context!r}\n{text}")
    return 0
