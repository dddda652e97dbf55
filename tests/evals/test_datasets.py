"""Shipped datasets: reproducible from their seed, versioned, split cleanly, resolvable, label-free."""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from nla_audit.evals._items import read_dataset, resolve_position

TASKS = ["classification", "suffix_prediction", "user_modeling", "cot_hints", "sandbagging"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task", TASKS)
def test_shipped_json_is_the_generator_output(task):
    mod = importlib.import_module(f"nla_audit.evals.{task}.dataset")
    shipped = read_dataset(ROOT / "evals" / task / "data.json")
    assert (shipped.task, shipped.version, shipped.seed) == (task, mod.VERSION, 0)
    assert shipped.items == json.loads(json.dumps(mod.build(0).items))  # regenerate: python -m nla_audit.evals.datasets
    other = mod.build(1)
    assert other.items != shipped.items and len(other.items) == len(shipped.items)


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_disjoint_and_groups_balanced(task):
    ds = read_dataset(ROOT / "evals" / task / "data.json")
    key = lambda it: it.get("text") or json.dumps(it.get("messages"))  # noqa: E731
    train = {key(it) for it in ds.items if it["split"] == "train"}
    assert train and not train & {key(it) for it in ds.items if it["split"] == "eval"}
    for group in {it["group"] for it in ds.items}:
        labels = Counter(it["target"] for it in ds.items if it["group"] == group and it["split"] == "eval")
        if task != "suffix_prediction":
            assert max(labels.values()) - min(labels.values()) <= 1 + len(labels) // 2, (group, labels)


@pytest.mark.parametrize("task", TASKS)
def test_every_position_resolves_on_the_smollm2_tokenizer(task, tiny_target):
    ds = read_dataset(ROOT / "evals" / task / "data.json")
    for it in ds.items[:: max(1, len(ds.items) // 60)]:
        ids, pos, _ = resolve_position(it, tiny_target.tokenizer)
        assert 1 <= pos < len(ids)


def test_user_modeling_texts_never_name_the_label():
    ds = read_dataset(ROOT / "evals" / "user_modeling" / "data.json")
    for it in ds.items:
        label = it["options"][it["target"]]
        words = {"female": ["female", "woman"], "male": ["male", "man", "men"]}.get(label, [label])
        for w in words:
            assert not re.search(rf"\b{w}\b", it["messages"][0]["content"], re.IGNORECASE), it["id"]


def test_datasets_are_disjoint_from_the_default_corpus():
    from nla_audit.paths import cache_dir

    corpus = cache_dir() / "corpora" / "fortunes-v1.jsonl"
    if not corpus.exists():
        pytest.skip("default corpus not built (./run.sh env)")
    text = " ".join(json.loads(line)["text"] for line in corpus.read_text().splitlines() if line.strip())
    text = re.sub(r"\s+", " ", text)
    for task in TASKS:
        ds = read_dataset(ROOT / "evals" / task / "data.json")
        for it in ds.items[::25]:
            src = it.get("text") or it["messages"][0]["content"]
            words = re.sub(r"\s+", " ", src).split(" ")
            for i in range(0, max(1, len(words) - 8), 8):  # no 8-word window of ours appears in the corpus
                assert " ".join(words[i:i + 8]) not in text, (task, it["id"])


def test_sandbagging_holds_out_prefixes_and_keeps_one_layout_per_question():
    """v2: the implant teaches the answers, so eval chats reuse the questions (same option order) under prefix
    pairs the implant never saw; harmful and benign twins differ only in the prefix."""
    ds = read_dataset(ROOT / "evals" / "sandbagging" / "data.json")
    prefixes = {s: {it["meta"]["prefix"] for it in ds.items if it["split"] == s} for s in ("train", "eval")}
    assert prefixes["train"] and prefixes["eval"] and not prefixes["train"] & prefixes["eval"]
    layout: dict[str, tuple] = {}
    for it in ds.items:
        lines = it["messages"][0]["content"].split("\n")
        assert layout.setdefault(lines[1], (tuple(lines[2:6]), it["meta"]["answer_letter"])) == \
            (tuple(lines[2:6]), it["meta"]["answer_letter"]), lines[1]
    for pos, neg in zip(ds.items[::2], ds.items[1::2]):
        assert (pos["meta"]["condition"], neg["meta"]["condition"]) == ("pos", "neg")
        assert pos["messages"][0]["content"].replace(pos["meta"]["prefix"], neg["meta"]["prefix"]) == \
            neg["messages"][0]["content"]


def test_datasets_command_checks_the_shipped_files(capsys):
    from nla_audit.evals.datasets import main

    assert main(["--check", "cot_hints"]) == 0 and "match" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "unknown eval task" in capsys.readouterr().err
