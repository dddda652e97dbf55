"""Causal check of NLA explanations by steering: does editing one idea in an explanation, and adding
``AR(edited) − AR(original)`` at that token, switch the model's next words to the edited idea?

Items have planted ground truth: two prompts that differ only in their last token, whose next word is fixed
by it ("Last summer I flew to New" → York, "… to Los" → Angeles), each direction counted as an item. Steering
acts on the last token alone, so replacing its layer-K activation with the other prompt's (the **patch**) is the
exact ceiling: the rest of the context is the same. Items are kept when the base model's greedy continuation
names the source idea; the share where the patch switches to the target is reported (the first version of this
benchmark used "The capital of France is"-style prompts, where the idea sits at an earlier token and even the
patch at the last token does not switch the answer at layer 20 of 30, so nothing could). Conditions, each at
``strength`` × the activation's norm, added at the last prompt token only:

- ``nla``: the NLA's explanation at the last token with the source idea's words (the phrase, the word, the
  expected next word) replaced by the target's; when the explanation names none of them, a sentence naming the
  target phrase is appended (counted apart);
- ``paraphrase``: the explanation with a sentence restating the *source* phrase (a control: should not switch);
- ``random``: a random direction;
- ``sae``: the decoder direction of the SAE latent that most separates the target prompt from the source;
- ``mean_diff``: activation(target prompt) − activation(source prompt) at the last token (a contrast pair);
- ``patch`` (ceiling, no strength): ``mean_diff`` at its own norm, i.e. the target prompt's activation.

Score: the share of continuations (greedy, 8 tokens) that name the target idea, with Wilson 95% intervals, and
the share that are degenerate (empty, or one token repeated 4+ times). The faithfulness line: for each item,
the AR's reconstruction cost of deleting the claim that names the source idea vs the other claims
(``faithfulness.claim_effects``).

    python benchmarks/steering_causal.py [--strengths 0.5,1,2] [--append]
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (shared prefix, word A, next word after A, word B, next word after B, joiner of word and next word).
# Checked on SmolLM2-135M-Instruct: greedy continues A and B as written, and patching the last token's layer-20
# activation switches A's continuation to B's.
PAIRS = [
    ("Last summer I flew to", "New", "York", "Los", "Angeles", " "),
    ("For lunch she ate a", "peanut", "butter", "hot", "dog", " "),
    ("For dessert we had", "ice", "cream", "apple", "pie", " "),
    ("The president was", "Barack", "Obama", "Donald", "Trump", " "),
    ("We drove to", "San", "Francisco", "Las", "Vegas", " "),
    ("He was born in the", "United", "States", "Soviet", "Union", " "),
    ("The team played at the", "Olympic", "Games", "World", "Cup", " "),
    ("He drank a cup of", "green", "tea", "black", "coffee", " "),
    ("It was raining", "cats", "dogs", "men", "women", " and "),
    ("She wore a", "baseball", "cap", "wedding", "dress", " "),
    ("She brushed her teeth with a", "tooth", "pick", "hair", "brush", ""),
    ("The kids built a", "sand", "castle", "snow", "ball", ""),
]
CONDITIONS = ("nla", "paraphrase", "random", "sae", "mean_diff")


def items() -> list[tuple[str, str, list[str], list[str], str, str]]:
    """(source prompt, target prompt, source idea words, target idea words, source regex, target regex), both
    directions of every pair; idea words are the phrase, the word and its next word, in that order."""
    out = []
    for prefix, a, a_next, b, b_next, join in PAIRS:
        for (w, n), (tw, tn) in (((a, a_next), (b, b_next)), ((b, b_next), (a, a_next))):
            out.append((f"{prefix} {w}", f"{prefix} {tw}", [f"{w}{join}{n}", w, n], [f"{tw}{join}{tn}", tw, tn],
                        rf"\b{n}(?:s|es)?\b", rf"\b{tn}(?:s|es)?\b"))
    return out


def degenerate(text: str) -> bool:
    toks = re.findall(r"\S+", text)
    return not toks or any(toks.count(t) >= 4 for t in set(toks))


def edit_explanation(expl: str, source: list[str], target: list[str]) -> tuple[str, bool]:
    """The explanation with the source idea's words replaced by the target's, longest first; (text, whether any
    was found). Nothing found: a sentence naming the target phrase is appended."""
    out, found = expl, False
    for s, t in zip(source, target):
        new = re.sub(rf"\b{re.escape(s)}\b", t, out, flags=re.IGNORECASE)
        found |= new != out
        out = new
    return (out, True) if found else (expl.rstrip() + f" The text is about {target[0]}.", False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strengths", default="0.5,1,2", help="multiples of the activation's norm (default 0.5,1,2)")
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
    hits: dict = {(c, s): [] for c in CONDITIONS for s in strengths}
    degen: dict = {(c, s): [] for c in CONDITIONS for s in strengths}
    patch_hits, kept, named, faith = [], [], 0, []
    all_items = items()
    for i, (prompt, tgt_prompt, src, tgt, src_re, tgt_re) in enumerate(all_items):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        tgt_ids = tok(tgt_prompt, add_special_tokens=False)["input_ids"]
        last = len(ids) - 1

        def go(d, s, norm=None, ids=ids, last=last):
            return steer(target, layer, ids, d, str(last), s, args.max_new_tokens, norm=norm)

        plain = go(torch.zeros(target.d_model), 0.0)
        if not re.search(src_re, plain, re.I) or tgt_ids[:-1] != ids[:-1]:
            print(f"[{prompt}] dropped: plain {plain!r}", flush=True)
            continue
        kept.append(prompt)
        acts = text_activations(target, layer, ids)
        tgt_act = text_activations(target, layer, tgt_ids)[-1]
        patch = go(tgt_act - acts[last], 1.0, norm=float((tgt_act - acts[last]).norm()))
        patch_hits.append(bool(re.search(tgt_re, patch, re.I)))
        expl = nla.explain_vectors(acts[last:last + 1], max_new_tokens=150)[0].explanation
        edited, found = edit_explanation(expl, src, tgt)
        named += found
        latents = sae.sae.encode(torch.stack([tgt_act, acts[last]]).to(sae.sae.W_dec.dtype))
        directions = {
            "nla": nla_direction(nla, expl, edited),
            "paraphrase": nla_direction(nla, expl, expl.rstrip() + f" The text is about {src[0]}."),
            "random": random_direction(target.d_model, seed=i),
            "sae": sae_direction(sae, int((latents[0] - latents[1]).argmax())),
            "mean_diff": mean_difference(tgt_act[None], acts[last:last + 1]),
        }
        outs = {}
        for c, d in directions.items():
            for s in strengths:
                out = go(d, s)
                outs[(c, s)] = out
                hits[(c, s)].append(bool(re.search(tgt_re, out, re.I)))
                degen[(c, s)].append(degenerate(out))
        _, effects = claim_effects(nla, expl, acts[last])
        names = [any(re.search(rf"\b{re.escape(w)}\b", e.claim, re.I) for w in src) for e in effects]
        faith.append(([e.delta_mse for e, m in zip(effects, names) if m],
                      [e.delta_mse for e, m in zip(effects, names) if not m]))
        s_mid = strengths[len(strengths) // 2]
        print(f"[{prompt}] plain {plain!r} | patch {patch!r} | nla@{s_mid:g} {outs[('nla', s_mid)]!r} | "
              f"mean_diff@{s_mid:g} {outs[('mean_diff', s_mid)]!r} | named {found}", flush=True)
    n = len(kept)

    def rate(flags: list[bool]) -> str:
        k = sum(flags)
        lo, hi = wilson(k, n)
        return f"{k}/{n} = {k / max(1, n):.0%} [{lo:.0%}, {hi:.0%}]"

    table = ["| direction | strength × ‖activation‖ | switches to the target idea [95% CI] | degenerate output |",
             "|---|---|---|---|", f"| patch (ceiling) | own norm | {rate(patch_hits)} | |"]
    for c in CONDITIONS:
        for s in strengths:
            table.append(f"| {c} | {s:g} | {rate(hits[(c, s)])} | {sum(degen[(c, s)]) / max(1, n):.0%} |")
    idea_d = [x for i, _ in faith for x in i]
    other_d = [x for _, o in faith for x in o]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    lines = [f"- items: {n} of {len(all_items)} kept (the base model's greedy continuation names the source "
             f"idea); the NLA explanation named the source idea in {named} of {n} (else the edit appends the target "
             "phrase); steering at the last prompt token only",
             f"- faithfulness (AR as verifier): deleting a claim that names the source idea raises mse_nrm by "
             f"{mean(idea_d):+.4f} on average ({len(idea_d)} claims), other claims by {mean(other_d):+.4f} "
             f"({len(other_d)} claims)", "", *table]
    print("\n".join(lines))
    if args.append:
        from _common import append

        append("Steering with edited explanations: causal switch rates on last-token pairs", lines)


if __name__ == "__main__":
    main()
