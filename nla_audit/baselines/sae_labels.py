"""Auto-interpretation of SAE latents: top-activating contexts and one label per latent (``labels.json``).

A latent's contexts are the rows of an activation parquet where it is most active, each shown as the
``detokenized_text_truncated`` column: the text up to and including the token whose activation was read, so
the *last* token of a context is the one the latent fired on. Two labellers:

* ``offline`` — **a proxy**, no model and no network: the most common final tokens of the top contexts and the
  words they share near the end (``ends in “ jacket” ×3; near: sports, coat``). It names surface patterns
  only; it cannot name an abstract feature, so SAE-vs-NLA comparisons that use it understate the SAE;
* ``claude`` — Claude writes a short label from the same contexts (delphi-style explanation, no scoring
  step), through ``nla_audit.claude`` (the one Claude client: bounded concurrency, retries with backoff on
  429/5xx/timeouts/network errors, an on-disk cache keyed by the request's sha256). The key comes from
  ``ANTHROPIC_API_KEY`` and is never written. Used automatically when the key is set.

Both labels are stored; ``label`` is Claude's when there is one, else the offline proxy's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from nla_audit.baselines.sae_files import LABELS_NAME, read_labels, read_latent_records  # noqa: F401  (re-exported)
from nla_audit.errors import ConfigError, InputError

TAIL_CHARS = 160  # characters of each context kept in labels.json and shown to Claude
STOPWORDS = frozenset("the a an and or but of to in on at for with by from as is are was were be been it its "
                      "this that these those he she they we you i his her their our your my me him them not no "
                      "so if then than there here what which who whom when where why how all any can will would "
                      "should could do does did has have had just also into out up down over".split())
PROMPT = (
    "Below are text snippets on which one latent (feature) of a sparse autoencoder over a language model's "
    "residual stream is most active. The latent reads the activation at the final token of each snippet, "
    "marked «like this»; the number in brackets is the activation strength.\n\n{examples}\n\n"
    "In at most 12 words, say what this latent responds to (the final token, its context, or what is likely "
    "to come next). Answer only with <label>...</label>."
)


# ----------------------------------------------------------------------------------------------- contexts
@torch.no_grad()
def top_activations(sae: Any, vectors: torch.Tensor, n: int,
                    batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per latent, the ``n`` strongest activations over ``vectors`` and their row indices ([d_sae, n] each;
    rows with no positive activation are -1), plus each latent's firing frequency [d_sae]."""
    d_sae = sae.cfg.d_sae
    best_v = torch.full((d_sae, n), float("-inf"))
    best_i = torch.full((d_sae, n), -1, dtype=torch.long)
    fired = torch.zeros(d_sae)
    for start in range(0, len(vectors), batch):
        acts = sae.encode(vectors[start:start + batch].to(sae.device, sae.dtype)).float().cpu()
        fired += (acts > 0).sum(0)
        rows = torch.arange(start, start + len(acts)).expand(d_sae, -1)
        cand_v, cand_i = torch.cat([best_v, acts.T], 1), torch.cat([best_i, rows], 1)
        top = cand_v.topk(min(n, cand_v.shape[1]), dim=1)
        best_v, best_i = top.values, cand_i.gather(1, top.indices)
    best_i[best_v <= 0] = -1
    return best_v, best_i, fired / max(len(vectors), 1)


def final_token(text: str) -> str:
    """The trailing word or punctuation run of a context: an approximation of the token the latent read."""
    m = re.search(r"(\w+|[^\w\s]+)\s*$", text)
    return m.group(1) if m else text[-1:]


def offline_label(texts: list[str]) -> str:
    """Proxy label: the commonest final tokens of the contexts and the words several of them share near the end."""
    finals = Counter(final_token(t).lower() for t in texts)
    parts = [f"“{tok}” ×{c}" if c > 1 else f"“{tok}”" for tok, c in finals.most_common(3)]
    near: Counter[str] = Counter()
    for t in texts:
        words = re.findall(r"[A-Za-z][A-Za-z'-]{2,}", t)[-12:-1]
        near.update({w.lower() for w in words} - STOPWORDS - set(finals))
    shared = [w for w, c in near.most_common(3) if c > 1]
    return "ends in " + ", ".join(parts) + (f"; near: {', '.join(shared)}" if shared else "")


# ----------------------------------------------------------------------------------------------- Claude
class ClaudeLabeller:
    """Claude labels latents from their top contexts (``client`` lets tests pass a fake async client)."""

    def __init__(self, model: str = "claude-haiku-4-5", cache_dir: str | Path | None = None, concurrency: int = 8,
                 max_retries: int = 6, client: Any = None) -> None:
        from nla_audit.claude import ClaudeClient, ClaudeConfig
        from nla_audit.paths import cache_dir as root

        self.model = model
        self.cache = Path(cache_dir or root() / "sae_label_cache" / model)
        config = ClaudeConfig(model=model, max_tokens=60, temperature=0.0, concurrency=concurrency,
                              max_retries=max_retries)
        self.claude = ClaudeClient(config, self.cache, client=client, alternative="use --labeller offline (a proxy)")

    @staticmethod
    def prompt(contexts: list[tuple[float, str]]) -> str:
        lines = []
        for act, text in contexts:
            tok = final_token(text)
            lines.append(f"[{act:.2f}] …{text[: len(text.rstrip()) - len(tok)]}«{tok}»")
        return PROMPT.format(examples="\n".join(lines))

    def _legacy(self, prompt: str) -> str | None:
        """A label cached before ``nla_audit.claude`` (keyed by model and prompt), so old caches stay free."""
        path = self.cache / (hashlib.sha256(f"{self.model}|{prompt}".encode()).hexdigest() + ".json")
        try:
            return json.loads(path.read_text())["label"]
        except (OSError, ValueError, KeyError):
            return None

    def label_all(self, contexts: list[list[tuple[float, str]]]) -> list[str | None]:
        """One label (None when the call failed after retries) per latent's context list."""
        prompts = [self.prompt(c) for c in contexts]
        old = [self._legacy(p) for p in prompts]
        todo = [p for p, o in zip(prompts, old) if o is None]
        fresh = iter(self.claude.complete_many(todo))
        return [o if o is not None else parse_label(next(fresh)) for o in old]


def parse_label(raw: str | None) -> str | None:
    """The text inside ``<label>`` (or the whole reply), on one line, at most 200 characters; None if empty."""
    if raw is None:
        return None
    m = re.search(r"<label>(.*?)</label>", raw, re.S)
    return " ".join((m.group(1) if m else raw).split())[:200] or None


def pick_labeller(choice: str, model: str, concurrency: int) -> ClaudeLabeller | None:
    """``auto`` = Claude when ANTHROPIC_API_KEY is set and anthropic is installed, else the offline proxy."""
    if choice not in ("auto", "offline", "claude"):
        raise ConfigError(f"unknown labeller {choice!r}", expected="auto, offline or claude")
    if choice == "offline":
        return None
    if choice == "auto":
        try:
            import anthropic  # noqa: F401
        except ImportError:
            return None
        if not os.environ.get("ANTHROPIC_API_KEY"):
            return None
    return ClaudeLabeller(model=model, concurrency=concurrency)


# ----------------------------------------------------------------------------------------------- driver
def label_sae(sae_dir: str | Path, data: list[str], n_contexts: int = 8,
              labeller: ClaudeLabeller | None = None) -> dict:
    """Write ``labels.json`` into ``sae_dir`` from the top contexts in ``data`` (same site as the SAE)."""
    from nla_audit.atomic import atomic_write_text
    from nla_audit.baselines.sae import load_sae
    from nla_audit.baselines.sae_train import load_site_vectors
    from nla_audit.sidecar import now_iso
    from nla_audit.site import Site

    if n_contexts < 1:
        raise InputError(f"contexts per latent is {n_contexts}", expected="an integer >= 1")
    sae, meta, folder = load_sae(sae_dir)
    site = Site(str(meta["base_model"]), int(meta["layer_index"]), sae.cfg.d_in)
    data_vecs = load_site_vectors(data, site, with_texts=True)
    texts = data_vecs.texts
    vals, rows, freq = top_activations(sae, data_vecs.vectors, n_contexts)
    contexts = [[(float(v), (texts[r] or "")[-TAIL_CHARS:]) for v, r in zip(vs, rs) if r >= 0]
                for vs, rs in zip(vals.tolist(), rows.tolist())]
    alive = [i for i, c in enumerate(contexts) if c]
    claude = labeller.label_all([contexts[i] for i in alive]) if labeller else [None] * len(alive)
    latents: dict[str, dict] = {str(i): {"label": None, "frequency": 0.0, "top": []} for i in range(sae.cfg.d_sae)}
    for i, c_label in zip(alive, claude):
        proxy = offline_label([t for _, t in contexts[i]])
        latents[str(i)] = {"label": c_label or proxy, "offline_label": proxy, "claude_label": c_label,
                           "frequency": round(float(freq[i]), 6), "top": [[round(a, 3), t] for a, t in contexts[i]]}
    doc = {"kind": "nla_sae_labels", "schema_version": 1, "d_sae": sae.cfg.d_sae,
           "labeller": f"claude:{labeller.model}" if labeller else "offline-proxy", "proxy": labeller is None,
           "datasets": data_vecs.dataset_ids, "n_rows": len(data_vecs.vectors), "contexts_per_latent": n_contexts,
           "n_labelled": len(alive), "n_claude": sum(x is not None for x in claude), "created_at": now_iso(),
           "latents": latents}
    atomic_write_text(folder / LABELS_NAME, json.dumps(doc, ensure_ascii=False))
    return {k: v for k, v in doc.items() if k != "latents"}
