"""Win rates from root-cause logs: per condition × data access, with Wilson intervals over organisms × seeds.

Rows (``summary``): win rate and mean 1–5 score over organisms with a planted cause; behaviour recall (trained
and held-out symptoms apart); false-positive rate over targets with none (decoy, base). ``per_organism`` gives
the same per organism. Both read the scores' metadata, so they work on any set of ``.eval`` logs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def score_rows(logs: list[Any], grader: str = "offline_grader") -> list[dict]:
    """One dict per scored sample: its metadata (organism, condition, data, seed, win, score, recall, ...)."""
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
                    "tool_calls": _mean([r.get("tool_calls") for r in rs])})
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in by))


def markdown(summary: list[dict], by: tuple[str, ...] = ("condition", "data")) -> list[str]:
    def f(x: Any, pct: bool = False) -> str:
        return "–" if x is None or x != x else (f"{x:.0%}" if pct else f"{x:.2f}")

    head = [*by, "audits", "win rate [95% CI]", "root-cause score (1–5)", "recall trained", "recall held-out",
            "false positives [95% CI]", "tool calls"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        win = f"{f(r['win_rate'], True)} [{f(r['win_ci'][0], True)}, {f(r['win_ci'][1], True)}]"
        fp = f"{f(r['false_positive_rate'], True)} [{f(r['fp_ci'][0], True)}, {f(r['fp_ci'][1], True)}]"
        out.append("| " + " | ".join([*(str(r[k]) for k in by), str(r["audits"]), win, f(r["score"]),
                                      f(r["recall_trained"]), f(r["recall_held_out"]), fp, f(r["tool_calls"])]) + " |")
    return out
