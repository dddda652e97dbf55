"""Shared framework pieces: positions, graders' parsing, intervals, probes, floor pairing, registry."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from nla_audit.errors import InputError
from nla_audit.evals._graders import grader_prompt, parse_letter
from nla_audit.evals._items import make_item, resolve_position
from nla_audit.evals._probe import EmbeddingProbe, LabelProbe
from nla_audit.evals._results import gap_with_ci, wilson
from nla_audit.evals._runner import _derangement

ROOT = Path(__file__).resolve().parents[2]


def test_positions_anchor_last_and_chat(tiny_target):
    tok = tiny_target.tokenizer
    it = make_item("a", "g", "eval", "q?", ["x", "y"], 0, text="(A) 7 ■ (B) 8 ■ (C) 9", position={"anchor": "■"})
    ids, pos, end = resolve_position(it, tok)
    assert tok.decode(ids[: pos + 1]).endswith("(B) 8 ■") and end == len("(A) 7 ■ (B) 8 ■")
    it = make_item("b", "g", "eval", "q?", ["x", "y"], 0, text="The capital of France is")
    ids, pos, _ = resolve_position(it, tok)
    assert pos == len(ids) - 1 and tok.decode([ids[pos]]) == " is"
    msg = "My wife is pregnant. Any tips for sleeping better?"
    it = make_item("c", "g", "eval", "q?", ["x", "y"], 0, messages=[{"role": "user", "content": msg}],
                   position={"anchor": msg})
    ids, pos, _ = resolve_position(it, tok)
    assert tok.decode(ids[: pos + 1]).endswith("sleeping better?") and "<|im_end|>" in tok.decode(ids[pos + 1:])
    bad = make_item("d", "g", "eval", "q?", ["x", "y"], 0, text="no marker here", position={"anchor": "■"})
    with pytest.raises(InputError, match="anchor"):
        resolve_position(bad, tok)


def test_parse_letter_and_prompt():
    assert parse_letter("ANSWER: C", 4) == 2
    assert parse_letter("answer = (b)", 4) == 1
    assert parse_letter("B) because ...", 4) == 1
    assert parse_letter("ANSWER: J", 4) is None
    assert parse_letter("I cannot tell", 4) is None
    p = grader_prompt("mentions pizza", "Which topic?", ["sports", "cooking"])
    assert "A) sports\nB) cooking" in p and "mentions pizza" in p


def test_wilson_and_gap():
    lo, hi = wilson(8, 10)
    assert 0.49 < lo < 0.5 and 0.94 < hi < 0.95  # textbook values 0.490, 0.943
    assert wilson(0, 5)[0] == 0.0
    g = gap_with_ci([1, 1, 1, 0], [0, 0, 0, 1])
    assert g["gap"] == pytest.approx(0.5) and g["lower"] < 0.5 < g["upper"]


def test_label_probe_separates_synthetic_signal():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=g)
    labels = ["a" if v > 0 else "b" for v in x[:, 3]]
    probe = LabelProbe(x[:200], labels[:200])
    correct = sum(probe.choose(x[i], ["b", "a"])[0] == ["b", "a"].index(labels[i]) for i in range(200, 300))
    assert correct >= 90 and probe.train_acc > 0.9
    assert probe.choose(x[0], ["zzz", "a"])[1][0] == float("-inf")  # unseen label never wins


def test_embedding_probe_picks_the_linked_option():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=-1)
    w = torch.randn(8, 32, generator=g)
    which = torch.randint(0, 10, (200,), generator=g)
    x = emb[which] @ w + 0.01 * torch.randn(200, 32, generator=g)
    probe = EmbeddingProbe(x[:150], emb[which[:150]], l2=1.0)
    hits = sum(probe.choose(x[i], emb)[0] == int(which[i]) for i in range(150, 200))
    assert hits >= 45


def test_floor_partner_is_a_derangement():
    ids = [f"i{k}" for k in range(37)]
    p = _derangement(ids, seed=3)
    assert sorted(p) == sorted(ids) and sorted(p.values()) == sorted(ids)
    assert all(k != v for k, v in p.items())
    assert p == _derangement(ids, seed=3) and p != _derangement(ids, seed=4)


def test_registry_is_import_light():
    code = ("import sys, nla_audit.evals._registry as r; "
            "assert not ({'torch', 'transformers'} & set(sys.modules)), 'heavy import'; print(r.TASKS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "classification" in out.stdout and "sandbagging" in out.stdout


def test_every_eval_folder_is_a_listed_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    folders = {f"nla_audit.evals.{p.parent.name}" for p in (ROOT / "evals").glob("*/__init__.py")}
    assert folders and folders <= listed
    eps = cfg["project"]["entry-points"]
    assert eps["inspect_ai"]["nla_audit"] == "nla_audit.evals._registry"
    assert eps["nla_audit.commands"]["evals"] == "nla_audit.evals.cli:register"


def test_markdown_and_plot_from_a_results_frame(tmp_path):
    import pandas as pd

    from nla_audit.evals._results import markdown_table, plot_vs_fve

    rows = []
    for expl, ckpt, fve, score in [("nla", "sft", 0.3, 0.5), ("nla", "rl", 0.6, 0.7), ("nla-shuffled", "sft", -0.2, 0.3),
                                   ("nla-shuffled", "rl", -0.1, 0.3), ("probe", "-", float("nan"), 0.9)]:
        rows.append({"task": "classification", "explainer": expl, "checkpoint": ckpt, "site": "m@L2",
                     "grader": "probe" if expl == "probe" else "embed", "group": "all", "metric": "accuracy", "n": 50,
                     "score": score, "ci_low": score - 0.1, "ci_high": score + 0.1, "chance": 0.29, "fve_nrm": fve})
    df = pd.DataFrame(rows)
    lines = markdown_table(df)
    assert lines[0].startswith("| task |") and len(lines) == 2 + len(rows)
    assert "| classification | nla | rl | embed | all | accuracy | 50 | 0.700 [0.600, 0.800] | 0.290 | 0.600 |" in lines
    png = plot_vs_fve(df, tmp_path / "p.png")
    assert png.exists() and png.stat().st_size > 5000


def test_sampled_explanations_are_seeded(tiny_nla):
    """-T temperature samples, and the same seed gives the same explanations (reruns of an eval agree)."""
    from nla_audit.evals._runner import EvalConfig
    from nla_audit.explainer import NLAExplainer
    from nla_audit.nla import NLA

    nla = NLA.load(*tiny_nla, dtype="float32")
    v = torch.randn(3, 64) * 4
    a = NLAExplainer(nla, max_new_tokens=8, temperature=1.0, seed=1).describe(v)
    assert NLAExplainer(nla, max_new_tokens=8, temperature=1.0, seed=1).describe(v) == a
    assert NLAExplainer(nla, max_new_tokens=8, temperature=1.0, seed=2).describe(v) != a
    with pytest.raises(InputError, match="temperature"):
        EvalConfig(temperature=-1)
