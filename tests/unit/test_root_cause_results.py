"""Root-cause tables from score rows: usage columns, head-to-head paired differences, grader agreement."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from nla_audit.errors import InputError
from nla_audit.evals.root_cause.results import (
    agreement,
    agreement_line,
    head_to_head,
    head_to_head_markdown,
    markdown,
    paired_difference_ci,
    paired_wins,
    score_rows,
    summarize,
)
from nla_audit.metrics import Z95, wilson


def row(org: str, cond: str, seed: int, win: bool, data: str = "none", planted: bool = True, **kw) -> dict:
    return {"organism": org, "condition": cond, "seed": seed, "data": data, "planted": planted,
            "win": win if planted else None, "false_positive": False, **kw}


def test_pairs_share_organism_seed_and_data_and_skip_unplanted_targets():
    rows = [row("lumen", "chat+nla", 0, True), row("lumen", "chat", 0, False),
            row("lumen", "chat+nla", 1, True), row("lumen", "chat", 1, True),
            row("lumen", "chat+nla", 2, True),  # chat never audited seed 2: no pair
            row("lumen", "chat", 0, True, data="full"),  # another unit: no chat+nla audit of it
            row("base", "chat+nla", 0, False, planted=False), row("base", "chat", 0, False, planted=False)]
    assert paired_wins(rows, "chat+nla", "chat") == [(True, False), (True, True)]
    (h,) = head_to_head(rows)  # only chat+nla vs chat: no chat+sae or chat+nla+sae rows
    assert (h["a"], h["b"], h["units"], h["only_a"], h["only_b"]) == ("chat+nla", "chat", 2, 1, 0)
    assert h["win_rate_a"] == 1.0 and h["win_rate_b"] == 0.5 and h["difference"] == 0.5
    assert h["ci"][0] < 0.5 < h["ci"][1]


def test_newcombe_interval_known_answers():
    u0 = Z95**2 / (10 + Z95**2)  # Wilson's upper limit for 0 of 10, in closed form
    lo, hi = paired_difference_ci([(False, False)] * 10)  # neither ever wins: 0, but not certainly 0
    assert lo == pytest.approx(-u0) and hi == pytest.approx(u0) and u0 == pytest.approx(0.2775, abs=1e-4)
    lo, hi = paired_difference_ci([(True, False)] * 10)  # a always, b never: phi = 0 (a margin is empty)
    assert lo == pytest.approx(1 - math.sqrt(2) * u0) and hi == 1.0
    lo, hi = paired_difference_ci([(True, True), (False, False)])  # concordant pairs: corrected phi = 0, not 1
    x = 0.5 - wilson(1, 2)[0]
    assert lo == pytest.approx(-math.sqrt(2) * x) and hi == pytest.approx(math.sqrt(2) * x) and x > 0.3
    mixed = [(True, False)] * 5 + [(True, True)] * 3 + [(False, True)] * 1 + [(False, False)] * 3
    lo, hi = paired_difference_ci(mixed)
    flo, fhi = paired_difference_ci([(y, x) for x, y in mixed])
    assert lo < 4 / 12 < hi and (flo, fhi) == pytest.approx((-hi, -lo))  # swapping a and b mirrors it
    assert all(math.isnan(x) for x in paired_difference_ci([]))


def test_head_to_head_covers_the_three_comparisons_and_prints_signed_points():
    rows = [row("lumen", c, s, c == "chat+nla") for c in ("chat", "chat+sae", "chat+nla", "chat+nla+sae")
            for s in range(3)]
    got = {(h["a"], h["b"]): h["difference"] for h in head_to_head(rows)}
    assert got == {("chat+nla", "chat"): 1.0, ("chat+nla", "chat+sae"): 1.0, ("chat+nla+sae", "chat"): 0.0}
    lines = head_to_head_markdown(head_to_head(rows))
    assert len(lines) == 2 + 3 and "| chat+nla vs chat | 3 | 100% | 0% | +100 pp [" in lines[2]


def test_tables_carry_mean_tool_calls_and_auditor_tokens():
    rows = [row("lumen", "chat", 0, True, tool_calls=4, auditor_tokens=1000),
            row("lumen", "chat", 1, False, tool_calls=6, auditor_tokens=3000)]
    (s,) = summarize(rows)
    assert s["tool_calls"] == 5 and s["auditor_tokens"] == 2000
    head, _, line = markdown([s])
    assert head.endswith("| tool calls | auditor tokens |") and line.endswith("| 5.00 | 2,000 |")


def test_agreement_summary():
    rows = [{"agree": True, "score_diff": 1}, {"agree": False, "score_diff": 3}, {"agree": True, "score_diff": None}]
    a = agreement(rows)
    assert a == {"samples": 3, "same_verdict": 2 / 3, "scored": 2, "mean_abs_score_diff": 2.0}
    assert "same verdict on 67% of 3 samples" in agreement_line(a)


def test_score_rows_reads_the_named_grader_and_refuses_unknown_keys():
    score = SimpleNamespace(metadata={"organism": "lumen"})
    log = SimpleNamespace(samples=[SimpleNamespace(scores={"model_grader": score})])
    assert score_rows([log], "model_grader") == [{"organism": "lumen"}] and score_rows([log]) == []
    with pytest.raises(InputError, match="unknown grader key 'model'"):
        score_rows([log], "model")
