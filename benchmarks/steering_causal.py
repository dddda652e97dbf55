"""Causal check of NLA explanations by steering (issue 28): does editing one idea in an explanation, and adding
``AR(edited) − AR(original)`` at that token, switch the model's next words to the edited idea?

Items have planted ground truth: a text whose next word is fixed by one idea (a capital, an animal's sound, a
colour, a language, a rhyme) and another idea to switch to. Items the base model does not complete with the
source idea (greedy) are dropped and counted. Conditions, each at the same norm (strength × the activation's
norm, added from the last token on):

- ``nla``: the NLA's explanation at the last token with the source idea's words replaced by the target's (when
  the explanation never names the source idea, a sentence naming the target is appended: counted apart);
- ``paraphrase``: the explanation with a sentence that restates the *source* idea (a control: should not switch);
- ``random``: a random direction;
- ``sae``: the decoder direction of the SAE latent that most separates the target text from the source text;
- ``mean_diff``: activation(target text) − activation(source text) at the last token (a contrast pair).

Score: the share of continuations (greedy, 8 tokens) that name the target idea, with Wilson 95% intervals, and
the share that are degenerate (empty, or one token repeated 4+ times). The faithfulness columns: for each item,
the AR's reconstruction cost of deleting the claim that names the source idea vs the other claims
(``faithfulness.claim_effects``).

    python benchmarks/steering_causal.py --strengths 2,4,8 [--append]
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (prompt, source idea words, target idea words, source answer regex, target answer regex)
ITEMS = [
    ("The capital of France is", ["France"], ["Italy"], r"paris", r"rome"),
    ("The capital of Japan is", ["Japan"], ["Spain"], r"tokyo", r"madrid"),
    ("The capital of Germany is", ["Germany"], ["Egypt"], r"berlin", r"cairo"),
    ("The capital of Italy is", ["Italy"], ["France"], r"rome", r"paris"),
    ("The cow says", ["cow"], ["dog"], r"moo", r"woof|bark"),
    ("The cat says", ["cat"], ["cow"], r"meow|miaow", r"moo"),
    ("The dog says", ["dog"], ["cat"], r"woof|bark", r"meow|miaow"),
    ("The colour of the sky is", ["sky"], ["grass"], r"blue", r"green"),
    ("The colour of grass is", ["grass"], ["snow"], r"green", r"white"),
    ("The colour of snow is", ["snow"], ["blood"], r"white", r"red"),
    ("In French, thank you is", ["French"], ["Spanish"], r"merci", r"gracias"),
    ("In Spanish, thank you is", ["Spanish"], ["French"], r"gracias", r"merci"),
    ("Twinkle, twinkle, little", ["twinkle"], ["baa"], r"star", r"sheep|black"),
    ("One, two, three, four,", ["numbers", "counting"], ["letters", "alphabet"], r"five|5", r"\b[a-e]\b"),
    ("Monday, Tuesday,", ["days", "weekdays"], ["months"], r"wednesday", r"january|february|march"),
    ("Bread and", ["bread"], ["salt"], r"butter", r"pepper"),
]
CONDITIONS = ("nla", "paraphrase", "random", "sae", "mean_diff")


def degenerate(text: str) -> bool:
    toks = re.findall(r"\S+", text)
    return not toks or any(toks.count(t) >= 4 for t in set(toks))


def edit_explanation(expl: str, source: list[str], target: list[str]) -> tuple[str, bool]:
    """The explanation with the source idea's words replaced by the target's; (text, whether any was found)."""
    out, found = expl, False
    for s, t in zip(source, target + target[-1:] * len(source)):
        new = re.sub(rf"\b{re.escape(s)}\b", t, out, flags=re.IGNORECASE)
        found |= new != out
        out = new
    return (out, True) if found else (expl.rstrip() + f" The text is about {target[0]}.", False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strengths", default="2,4,8")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--sae", default="default")
    ap.add_argument("--av", default=None)
    ap.add_argument("--ar", default=None)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()
    import torch

    from nla_audit.baselines.sae import SAEExplainer
    from nla_audit.extract import text_activations
    from nla_audit.faithfulness import claim_effects
    from nla_audit.metrics import wilson
    from nla_audit.nla import NLA
    from nla_audit.steering import mean_difference, nla_direction, random_direction, sae_direction, steer

    strengths = [float(s) for s in args.strengths.split(",")]
    nla = NLA.load(args.av, args.ar, dtype="float32", device="cpu")
    sae = SAEExplainer.from_dir(args.sae)
    target, layer, tok = nla.target, nla.layer, nla.target.tokenizer
    hits = {(c, s): [] for c in CONDITIONS for s in strengths}
    degen = {(c, s): [] for c in CONDITIONS for s in strengths}
    kept, named, faith = [], 0, []
    for i, (prompt, src, tgt, src_re, tgt_re) in enumerate(ITEMS):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        last = len(ids) - 1
        plain = steer(target, layer, ids, torch.zeros(target.d_model), str(last), 0.0, args.max_new_tokens)
        if not re.search(src_re, plain, re.I):
            continue
        kept.append(prompt)
        acts = text_activations(target, layer, ids)
        expl = nla.explain_vectors(acts[last:last + 1], max_new_tokens=150)[0].explanation
        edited, found = edit_explanation(expl, src, tgt)
        named += found
        tgt_ids = tok(prompt.replace(src[0], tgt[0]), add_special_tokens=False)["input_ids"]
        tgt_act = text_activations(target, layer, tgt_ids)[-1]
        latents = sae.sae.encode(torch.stack([tgt_act, acts[last]]).to(sae.sae.W_dec.dtype))
        directions = {
            "nla": nla_direction(nla, expl, edited),
            "paraphrase": nla_direction(nla, expl, expl.rstrip() + f" The text is about {src[0]}."),
            "random": random_direction(target.d_model, seed=i),
            "sae": sae_direction(sae, int((latents[0] - latents[1]).argmax())),
            "mean_diff": mean_difference(tgt_act[None], acts[last:last + 1]),
        }
        for c, d in directions.items():
            for s in strengths:
                out = steer(target, layer, ids, d, f"{last}:", s, args.max_new_tokens)
                hits[(c, s)].append(bool(re.search(tgt_re, out, re.I)))
                degen[(c, s)].append(degenerate(out))
        _, effects = claim_effects(nla, expl, acts[last])
        names = [any(re.search(rf"\b{re.escape(w)}\b", e.claim, re.I) for w in src) for e in effects]
        faith.append(([e.delta_mse for e, m in zip(effects, names) if m],
                      [e.delta_mse for e, m in zip(effects, names) if not m]))
        print(f"[{prompt}] plain {plain!r} | nla@{strengths[-1]} hit {hits[('nla', strengths[-1])][-1]}", flush=True)
    n = len(kept)
    table = ["| direction | strength | switches to the edited idea [95% CI] | degenerate output |", "|---|---|---|---|"]
    for c in CONDITIONS:
        for s in strengths:
            k = sum(hits[(c, s)])
            lo, hi = wilson(k, n)
            table.append(f"| {c} | {s:g} | {k}/{n} = {k / max(1, n):.0%} [{lo:.0%}, {hi:.0%}] "
                         f"| {sum(degen[(c, s)]) / max(1, n):.0%} |")
    idea_d = [x for i, _ in faith for x in i]
    other_d = [x for _, o in faith for x in o]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    lines = [f"- items: {n} of {len(ITEMS)} kept (the base model's greedy continuation names the source idea); the "
             f"NLA explanation named the source idea in {named} of {n} (else the edit appends the target idea)",
             f"- faithfulness (AR as verifier): deleting the claim that names the source idea raises mse_nrm by "
             f"{mean(idea_d):+.4f} on average ({len(idea_d)} claims), other claims by {mean(other_d):+.4f} "
             f"({len(other_d)} claims)", "", *table]
    print("\n".join(lines))
    if args.append:
        from _common import append

        append("Steering with edited explanations: causal switch rates (issue 28)", lines)


if __name__ == "__main__":
    main()
