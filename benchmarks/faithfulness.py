"""Faithfulness of NLA explanations at held-out positions: the AR as verifier, and whether the claims it relies
on are the claims whose edits move the model.

For each held-out position (test-split fortunes documents, and test-split ShareGPT conversations at content and
chat-template tokens) the NLA explains the activation greedily; the explanation is split into claims
(sentences). Per claim:

- ``delta_mse``: the AR's reconstruction error (mse_nrm) without the claim minus with the whole explanation
  (> 0: the AR relied on the claim);
- ``kl``: KL(steered ‖ plain) of the model's next-token distribution when ``AR(without the claim) − AR(whole)``
  is added at that token, at ``--strength`` × the activation's norm (the steering recipe, with the edit being a
  deletion). A random direction at the same strength gives the scale of "any push this big".

Reported: claims per explanation; share of claims the AR relies on; Spearman's rank correlation between
``delta_mse`` and ``kl`` over all claims, with a 95% interval resampling positions; how often the claim the AR
relies on most is also the one that moves the model most, against chance (1 / claims); KL of the most- vs
least-relied claim (paired); all by class.

    python benchmarks/faithfulness.py [--text-docs 16 --chat-docs 8 --positions 2 --strength 1] [--append]
"""

from __future__ import annotations

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def heldout_prefixes(target, text_docs: int, chat_docs: int, positions: int, max_length: int):
    """[(class, doc id, token ids up to and including the position)]: the held-out positions of ``fve_by_class``."""
    from fve_by_class import heldout_documents

    return [(cls, doc_id, ids[: p + 1])
            for doc_id, ids, picks in heldout_documents(target.tokenizer, text_docs, chat_docs, positions, max_length)
            for p, cls in picks]


def summarize(rows: list[dict], n_boot: int = 1000) -> list[str]:
    """Table lines for one class's positions (each row: claims' delta_mse and kl lists, random kl)."""
    import torch

    from nla_audit.metrics import spearman

    def rho(sample: list[dict]) -> float:
        d = [x for r in sample for x in r["delta"]]
        k = [x for r in sample for x in r["kl"]]
        return spearman(torch.tensor(d), torch.tensor(k))

    multi = [r for r in rows if len(r["delta"]) >= 2]
    rng = random.Random(0)
    boots = sorted(b for b in (rho([rng.choice(rows) for _ in rows]) for _ in range(n_boot)) if b == b)
    ci = (boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]) if boots else (float("nan"),) * 2
    claims = [len(r["delta"]) for r in rows]
    relied = sum(x > 0 for r in rows for x in r["delta"]) / max(1, sum(claims))
    top_is_top = sum(r["delta"].index(max(r["delta"])) == r["kl"].index(max(r["kl"])) for r in multi)
    chance = sum(1 / len(r["delta"]) for r in multi)
    most = [r["kl"][r["delta"].index(max(r["delta"]))] for r in multi]
    least = [r["kl"][r["delta"].index(min(r["delta"]))] for r in multi]
    gap = sum(a - b for a, b in zip(most, least)) / max(1, len(multi))
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    return [f"{len(rows)} | {mean(claims):.1f} | {relied:.0%} | {mean([x for r in rows for x in r['delta']]):+.4f} | "
            f"{rho(rows):+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] | {top_is_top}/{len(multi)} (chance {chance:.1f}) | "
            f"{mean(most):.3f} vs {mean(least):.3f} ({gap:+.3f}) | {mean([x for r in rows for x in r['kl']]):.3f} | "
            f"{mean([r['random'] for r in rows]):.3f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-docs", type=int, default=16)
    ap.add_argument("--chat-docs", type=int, default=8)
    ap.add_argument("--positions", type=int, default=2)
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--av", default=None)
    ap.add_argument("--ar", default=None)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()
    from nla_audit.errors import InputError
    from nla_audit.extract import text_activations
    from nla_audit.faithfulness import claim_steering
    from nla_audit.nla import NLA
    from nla_audit.steering import next_token_shift, random_direction

    nla = NLA.load(args.av, args.ar, dtype="float32", device="cpu")
    target = nla.target
    items = heldout_prefixes(target, args.text_docs, args.chat_docs, args.positions, args.max_length)
    by_class: dict[str, list[dict]] = {}
    for i, (cls, doc_id, ids) in enumerate(items):
        act = text_activations(target, nla.layer, ids)[-1]
        expl = nla.explain_vectors(act[None], max_new_tokens=150)[0].explanation
        try:
            rows = claim_steering(nla, expl, ids, args.strength)
        except InputError as e:  # an empty explanation: counted by its absence
            print(f"[{i}] {cls} {doc_id}: skipped ({e})", flush=True)
            continue
        rand = next_token_shift(target, nla.layer, ids, random_direction(target.d_model, seed=i), args.strength)
        by_class.setdefault(cls, []).append({"delta": [r.delta_mse for r in rows], "kl": [r.kl for r in rows],
                                             "random": rand})
        print(f"[{i}/{len(items)}] {cls}: {len(rows)} claims, delta {[round(r.delta_mse, 3) for r in rows]}, "
              f"kl {[round(r.kl, 3) for r in rows]}, random {rand:.3f}", flush=True)
    head = ("| class | positions | claims / expl. | claims the AR relies on (Δmse > 0) | mean Δmse | Spearman(Δmse, KL) "
            "[95% CI] | top-relied claim = top-steering claim | KL: most- vs least-relied claim | KL mean: claims | "
            "KL: random direction |")
    table = [head, "|" + "---|" * 10]
    for cls in ("text", "chat content", "chat control"):
        if by_class.get(cls):
            table.append(f"| {cls} | " + summarize(by_class[cls])[0] + " |")
    pooled = [r for rs in by_class.values() for r in rs]
    table.append("| all | " + summarize(pooled)[0] + " |")
    lines = [f"- NLA: {args.av or 'shipped default'}; strength {args.strength:g} × the activation's norm, at the "
             "explained token only; KL of the next-token distribution (nats); greedy explanations, 150 tokens",
             "", *table]
    print("\n".join(lines))
    if args.append:
        from _common import append

        append("Faithfulness: the AR as verifier and claim-deletion steering at held-out positions", lines)


if __name__ == "__main__":
    main()
