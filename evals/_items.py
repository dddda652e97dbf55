"""Eval items: the shipped JSON format, seeded regeneration, subsetting, and where in the target's tokens an
item is explained.

An item is plain, model-agnostic text: ``text`` (raw) or ``messages`` (a chat, rendered with the target's own
template, plus its assistant header when ``generation_prompt`` is set), the ``position`` to explain (``"last"`` token, or ``{"anchor": s}`` = the token holding the last
character of the last occurrence of ``s`` in the rendered text), a multiple-choice ``question`` with
``options`` and the index of the ``target`` option, a ``group`` (sub-dataset) and a ``split`` (``train`` for
the linear-probe ceiling, ``eval`` for scoring). Positions are resolved per tokenizer from character offsets,
so one dataset serves any target model; a wrong position would silently measure the wrong token, hence the
checks in ``resolve_position``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nla_audit.chat_layout import render as render_chat
from nla_audit.errors import InputError

FORMAT = "nla_audit.evals/items-v1"


@dataclass(frozen=True)
class DatasetFile:
    """A task's items plus their provenance (what generated them, with which seed and version)."""

    task: str
    version: str
    seed: int
    items: list[dict]
    site: dict | None = None  # a dataset tied to one target (sandbagging) names it here; None = any target

    def to_json(self) -> str:
        """Header fields, then one item per line (compact, diff-friendly)."""
        head = json.dumps({"format": FORMAT, "task": self.task, "version": self.version, "seed": self.seed,
                           "site": self.site, "n_items": len(self.items)}, ensure_ascii=False)[:-1]
        body = ",\n".join(json.dumps(it, ensure_ascii=False, separators=(",", ":")) for it in self.items)
        return f'{head}, "items": [\n{body}\n]}}'



def write_dataset(path: Path, ds: DatasetFile) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(ds.to_json() + "\n", encoding="utf-8")
    tmp.replace(path)


def read_dataset(path: Path) -> DatasetFile:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read eval dataset {path}: {exc}", fix="reinstall nla_audit or regenerate with -T seed=N") from None
    if obj.get("format") != FORMAT:
        raise InputError(f"{path} has format {obj.get('format')!r}", expected=FORMAT)
    return DatasetFile(obj["task"], obj["version"], int(obj["seed"]), obj["items"], obj.get("site"))


def load_items(task: str, version: str, seed: int, shipped: Path, build: Callable[[int], DatasetFile]) -> DatasetFile:
    """The shipped JSON for its own seed (checked against the generator version), else regenerate in memory."""
    if shipped.exists():
        ds = read_dataset(shipped)
        if ds.seed == seed and ds.version == version:
            return ds
    return build(seed)


def rng_for(task: str, version: str, seed: int, *parts: object) -> random.Random:
    """A generator RNG that depends only on (task, version, seed, parts): reproducible on every platform."""
    key = "|".join(str(x) for x in (task, version, seed, *parts))
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def make_item(id: str, group: str, split: str, question: str, options: list[str], target: int, *,
              text: str | None = None, messages: list[dict] | None = None, position: Any = "last",
              meta: dict | None = None) -> dict:
    if (text is None) == (messages is None):
        raise ValueError("an item has exactly one of text / messages")
    if not 0 <= target < len(options) or len(set(options)) != len(options):
        raise ValueError(f"item {id}: bad options/target")
    item = {"id": id, "group": group, "split": split, "question": question, "options": options, "target": target,
            "position": position, "meta": meta or {}}
    item["text" if text is not None else "messages"] = text if text is not None else messages
    return item


def check_disjoint(items: list[dict]) -> None:
    """Train and eval items never share a text (the probe ceiling must not see eval items)."""
    seen: dict[str, str] = {}
    for it in items:
        key = it.get("text") or json.dumps(it.get("messages"))
        if key in seen and seen[key] != it["split"]:
            raise ValueError(f"item {it['id']} appears in both splits")
        seen[key] = it["split"]


def select(items: list[dict], split: str, n: int | None, group: str | None = None) -> list[dict]:
    """Items of one split, at most ``n`` per group (first n in file order, which is already shuffled)."""
    if n is not None and n < 1:
        raise InputError(f"n={n}", expected="n >= 1 (items per group) or None for all")
    out: list[dict] = []
    count: dict[str, int] = {}
    for it in items:
        if it["split"] != split or (group is not None and it["group"] != group):
            continue
        if n is None or count.get(it["group"], 0) < n:
            out.append(it)
            count[it["group"]] = count.get(it["group"], 0) + 1
    return out


# ----------------------------------------------------------------------------------------- positions
def render(item: dict, tokenizer: Any) -> tuple[str, bool]:
    """The text the target reads and whether it must be encoded with the tokenizer's special tokens.

    Same convention as ``nla_audit.corpus.tokenize_document``: raw text with special tokens, chats rendered
    by ``chat_layout.render`` (the model's chat template) and encoded without (no second BOS)."""
    if item.get("messages") is not None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise InputError(f"item {item['id']} is a chat but the target's tokenizer has no chat template",
                             fix="use an instruct model (with a chat template) as the target")
        gen = bool(item.get("generation_prompt") or item.get("answer_prefix") is not None)
        text = render_chat(tokenizer, item["messages"], add_generation_prompt=gen)
        return text + (item.get("answer_prefix") or ""), False
    return item["text"], True


def resolve_position(item: dict, tokenizer: Any, max_length: int = 2048) -> tuple[list[int], int, int]:
    """(token ids, position to explain, character end of that token in the rendered text)."""
    text, special = render(item, tokenizer)
    try:
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    except NotImplementedError:
        raise InputError("the target's tokenizer has no character offsets",
                         expected="a fast (Rust) Hugging Face tokenizer") from None
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if len(ids) > max_length:
        raise InputError(f"item {item['id']} is {len(ids)} tokens long", expected=f"<= {max_length}")
    real = [i for i, (a, b) in enumerate(offsets) if b > a]  # special tokens have empty spans
    if not real:
        raise InputError(f"item {item['id']} tokenizes to no text tokens")
    spec = item.get("position", "last")
    if spec == "last":
        pos = real[-1]
    elif isinstance(spec, dict) and "anchor" in spec:
        start = text.rfind(spec["anchor"])
        if start < 0:
            raise InputError(f"item {item['id']}: anchor {spec['anchor'][:40]!r} not found in the rendered text",
                             fix="the target's chat template changed the text; regenerate the dataset")
        end = start + len(spec["anchor"])
        cands = [i for i in real if offsets[i][0] < end]
        pos = cands[-1]
    else:
        raise InputError(f"item {item['id']}: position {spec!r} is not understood", expected='"last" or {"anchor": ...}')
    if pos < 1:
        raise InputError(f"item {item['id']}: position {pos} is the attention sink", expected="a position >= 1")
    return ids, pos, offsets[pos][1]


def context_text(item: dict, tokenizer: Any, max_chars: int = 2000) -> str:
    """What the raw-text reader sees: the rendered text up to and including the explained token (chat
    special tokens replaced by line breaks), keeping the last ``max_chars`` characters."""
    text, _ = render(item, tokenizer)
    _, _, end = resolve_position(item, tokenizer)
    ctx = text[:end]
    for tok in getattr(tokenizer, "all_special_tokens", []) or []:
        if tok:
            ctx = ctx.replace(tok, "\n")
    ctx = "\n".join(line for line in ctx.splitlines() if line.strip())
    return ctx[-max_chars:]
