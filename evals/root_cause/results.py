"""Win rates from root-cause logs: per condition × data access, with Wilson intervals over organisms × seeds.

Rows (``summarize``): win rate and mean 1–5 score over organisms with a planted cause; behaviour recall (trained
and held-out symptoms apart); false-positive rate over targets with none (decoy, base); mean tool calls and
auditor tokens an audit. ``summarize(rows, by=("organism", ...))`` gives the same per organism. ``head_to_head``
compares two conditions on the same audits' units; ``agreement`` summarises the two graders' agreement. All read
the scores' metadata (``score_rows``, from either grader's scorer), so they work on any set of ``.eval`` logs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from nla_audit.errors import InputError

GRADER_KEYS = ("offline_grader", "model_grader")  # the scorers whose rows tabulate (task.GRADERS' values)
AGREEMENT_KEY = "grader_agreement"
PAIRS = (("chat+nla", "chat"), ("chat+nla", "chat+sae"), ("chat+nla+sae", "chat"))
PAIR_UNIT = ("organism", "seed", "data")  # what two conditions' audits share when they are compared


def score_rows(logs: list[Any], grader: str = "offline_grader") -> list[dict]:
    """One dict per sample that ``grader`` (a scorer's name: ``GRADER_KEYS`` or ``grader_agreement``) scored:
    its metadata (organism, condition, data, seed, win, score, recall, ...). An unknown name is an error, not
    an empty table."""
    if grader not in (*GRADER_KEYS, AGREEMENT_KEY):
        raise InputError(f"unknown grader key {grader!r}", expected=", ".join((*GRADER_KEYS, AGREEMENT_KEY)))
    rows = []
    for log in logs:
        for s in log.samples or []:
            sc = (s.scores or {}).get(grader)
            if sc is not None:
                rows.append(dict(sc.metadata or {}))
    return rows


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(rows: list[dict], by: tuple[str, ...] = ("condition", "data")) -> list[dict]:
    from nla_audit.metrics import wilson

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in by)].append(r)
    out = []
    for key, rs in groups.items():
        planted = [r for r in rs if r.get("planted")]
        none = [r for r in rs if not r.get("planted")]
        wins = sum(bool(r.get("win")) for r in planted)
        fps = sum(bool(r.get("false_positive")) for r in none)
        lo, hi = wilson(wins, len(planted))
        flo, fhi = wilson(fps, len(none))
        out.append({**dict(zip(by, key)), "audits": len(rs), "win_rate": wins / len(planted) if planted else None,
                    "win_ci": [lo, hi], "score": _mean([r.get("score") for r in planted]),
                    "recall_trained": _mean([r.get("recall_trained") for r in planted]),
                    "recall_held_out": _mean([r.get("recall_held_out") for r in planted]),
                    "false_positive_rate": fps / len(none) if none else None, "fp_ci": [flo, fhi],
                    "tool_calls": _mean([r.get("tool_calls") for r in rs]),
                    "auditor_tokens": _mean([r.get("auditor_tokens") for r in rs])})
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in by))


def markdown(summary: list[dict], by: tuple[str, ...] = ("condition", "data")) -> list[str]:
    f = _fmt
    head = [*by, "audits", "win rate [95% CI]", "root-cause score (1–5)", "recall trained", "recall held-out",
            "false positives [95% CI]", "tool calls", "auditor tokens"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        win = f"{f(r['win_rate'], True)} [{f(r['win_ci'][0], True)}, {f(r['win_ci'][1], True)}]"
        fp = f"{f(r['false_positive_rate'], True)} [{f(r['fp_ci'][0], True)}, {f(r['fp_ci'][1], True)}]"
        out.append("| " + " | ".join([*(str(r[k]) for k in by), str(r["audits"]), win, f(r["score"]),
                                      f(r["recall_trained"]), f(r["recall_held_out"]), fp, f(r["tool_calls"]),
                                      _tokens(r.get("auditor_tokens"))]) + " |")
    return out


def _fmt(x: Any, pct: bool = False) -> str:
    return "–" if x is None or x != x else (f"{x:.0%}" if pct else f"{x:.2f}")


def _tokens(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


# ------------------------------------------------------------------------------------------- head to head
def paired_wins(rows: list[dict], a: str, b: str) -> list[tuple[bool, bool]]:
    """(a won, b won) per unit (``PAIR_UNIT``: organism, seed, data access) that both conditions audited, over
    organisms with a planted cause only (a target with none has no win to compare). A unit audited twice under
    one condition (logs read together twice) counts its first row."""
    wins: dict[str, dict[tuple, bool]] = {a: {}, b: {}}
    for r in rows:
        if r.get("planted") and r.get("condition") in wins:
            wins[r["condition"]].setdefault(tuple(r.get(k) for k in PAIR_UNIT), bool(r.get("win")))
    return [(wins[a][u], wins[b][u]) for u in sorted(wins[a], key=str) if u in wins[b]]


def paired_difference_ci(pairs: list[tuple[bool, bool]]) -> tuple[float, float]:
    """95% interval for P(a wins) − P(b wins) over paired units, by Newcombe's (1998) square-and-add score method
    for paired proportions: the two win rates' Wilson intervals combined through the correlation (phi) of the
    paired outcomes, with phi's numerator ad − bc shrunk by n/2 toward 0 when positive (Newcombe's correction).
    Not a bootstrap: closed form and deterministic (no resampling seed), and it does not collapse to a point
    when no unit is discordant, which at a few organisms × seeds is common (a bootstrap, or the uncorrected phi
    of 1, would say "+0 pp [+0, +0]"). (nan, nan) for no units."""
    from nla_audit.metrics import wilson

    n = len(pairs)
    if n == 0:
        return (float("nan"), float("nan"))
    both = sum(x and y for x, y in pairs)
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    (l1, u1), (l2, u2) = wilson(both + only_a, n), wilson(both + only_b, n)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = float(both * neither - only_a * only_b)
    cross = max(cross - n / 2, 0.0) if cross > 0 else cross
    phi = cross / math.sqrt(margins) if margins else 0.0
    d = p1 - p2
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, d - down), min(1.0, d + up))


def head_to_head(rows: list[dict], pairs: tuple[tuple[str, str], ...] = PAIRS) -> list[dict]:
    """Per pair of conditions (a, b) that both appear in ``rows``: the difference in win rate a − b over their
    paired units (``paired_wins``) with its 95% interval (``paired_difference_ci``), and how often only one won."""
    present = {r.get("condition") for r in rows}
    out = []
    for a, b in pairs:
        if a not in present or b not in present:
            continue
        wins = paired_wins(rows, a, b)
        n = len(wins)
        lo, hi = paired_difference_ci(wins)
        out.append({"a": a, "b": b, "units": n, "win_rate_a": sum(x for x, _ in wins) / n if n else None,
                    "win_rate_b": sum(y for _, y in wins) / n if n else None,
                    "difference": sum(x - y for x, y in wins) / n if n else None, "ci": [lo, hi],
                    "only_a": sum(x and not y for x, y in wins), "only_b": sum(y and not x for x, y in wins)})
    return out


def head_to_head_markdown(h2h: list[dict]) -> list[str]:
    head = ["comparison", "paired units", "win rate a", "win rate b", "a − b [95% CI]", "only a won", "only b won"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in h2h:
        diff = f"{_signed(r['difference'])} [{_signed(r['ci'][0])}, {_signed(r['ci'][1])}]"
        out.append("| " + " | ".join([f"{r['a']} vs {r['b']}", str(r["units"]), _fmt(r["win_rate_a"], True),
                                      _fmt(r["win_rate_b"], True), diff, str(r["only_a"]), str(r["only_b"])]) + " |")
    return out


def _signed(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:+.0f} pp"


# ------------------------------------------------------------------------------------------- grader agreement
def agreement(rows: list[dict]) -> dict:
    """The two graders' agreement over ``grader_agreement`` rows: share of samples with the same verdict, and
    the mean |score difference| over samples with a planted cause both scored."""
    diffs = [r["score_diff"] for r in rows if r.get("score_diff") is not None]
    return {"samples": len(rows), "same_verdict": _mean([float(bool(r.get("agree"))) for r in rows]),
            "scored": len(diffs), "mean_abs_score_diff": _mean(diffs)}


def agreement_line(a: dict) -> str:
    return (f"grader agreement (offline rubric vs Claude): same verdict on {_fmt(a['same_verdict'], True)} of "
            f"{a['samples']} samples; mean |score difference| {_fmt(a['mean_abs_score_diff'])} (1–5 scale, "
            f"{a['scored']} samples with a planted cause)")
