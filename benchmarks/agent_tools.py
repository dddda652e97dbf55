"""What one auditor tool call costs on the embedded model with the shipped NLA and SAE, and one scripted audit.

Why: an auditing agent's budget is counted in tool calls, and on a laptop each call is CPU time. This measures
each tool once warm (median of ``--reps``), the per-position cost of ``explain`` for one position vs a batch,
and the wall time of a whole scripted audit (the plan below; no LLM, so the auditor's own latency is not in it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "I am planning a trip. What is the capital of France, and what should I see there?"


def timed(coro_fn, reps: int) -> tuple[float, str]:
    """Median seconds over ``reps`` calls, and the last answer."""
    times, out = [], ""
    for _ in range(reps):
        t0 = time.perf_counter()
        out = asyncio.run(coro_fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=12, help="positions in the batched explain call")
    ap.add_argument("--append", action="store_true", help="append the entry to BENCHMARKS.md (default: print only)")
    args = ap.parse_args()

    import torch
    from _common import record

    from nla_audit.agents.run import run_audit
    from nla_audit.agents.scripted import ScriptedAuditor
    from nla_audit.agents.session import AuditConfig, AuditSession
    from nla_audit.agents.tools import audit_tools

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    sess = AuditSession(AuditConfig(sae="default", max_positions=args.batch))
    sess.load()  # the NLA (AV, AR, target) and the SAE
    load_s = time.perf_counter() - t0
    chat, tokens, explain, sae_features, sae_details, sae_search = audit_tools(sess)
    rows = []
    s, out = timed(lambda: chat(message=QUESTION), 1)
    cut = re.search(r"\[the reply was cut at (\d+) tokens\]", out)
    rows.append(("chat (greedy reply, first call)", s, f"cut at the {cut.group(1)}-token cap" if cut else "ended by the model"))
    n = len(sess.activations("t0").ids)
    rows.append(("tokens (40 positions)", timed(lambda: tokens(transcript_id="t0", start=-40), args.reps)[0], ""))
    one, _ = timed(lambda: explain(transcript_id="t0", positions="-2"), args.reps)
    many, _ = timed(lambda: explain(transcript_id="t0", positions=f"-{args.batch}:"), args.reps)
    rows.append(("explain, 1 position", one, ""))
    speed = f"{many / args.batch:.2f} s a position, {one * args.batch / many:.1f}x faster than one by one"
    rows.append((f"explain, {args.batch} positions", many, speed))
    rows.append(("sae_features", timed(lambda: sae_features(transcript_id="t0", position=-2), args.reps)[0], ""))
    rows.append(("sae_feature_details", timed(lambda: sae_details(feature=3), args.reps)[0], ""))
    rows.append(("sae_search", timed(lambda: sae_search(query="france"), args.reps)[0], ""))

    plan = [{"calls": [{"tool": "chat", "args": {"message": QUESTION}}]},
            {"calls": [{"tool": "explain", "args": {"transcript_id": "t1", "positions": "-8:"}}]},
            {"calls": [{"tool": "sae_features", "args": {"transcript_id": "t1", "position": -3}}]},
            {"calls": [{"tool": "chat", "args": {"message": "Why?", "continue_transcript": "t1"}}]},
            {"calls": [{"tool": "explain", "args": {"transcript_id": "t2", "positions": "-4:"}}]},
            {"say": "<report>scripted</report>"}]
    rec = asyncio.run(run_audit(sess, ScriptedAuditor(turns=plan), "benchmark", max_tool_calls=10))
    table = ["| tool call | median s | note |", "|---|---|---|"]
    table += [f"| {name} | {sec:.3f} | {note} |" for name, sec, note in rows]
    for line in table:
        print(line)
    print(f"scripted audit: {rec.tool_calls} calls in {rec.wall_s:.1f} s; load {load_s:.1f} s")
    record("Auditor tool calls on the embedded model (agents)", [
        (f"- shipped NLA (AV + AR) and shipped SAE on SmolLM2-135M-Instruct layer 20, fp32; transcript t0 = one chat "
         f"turn ({n} tokens); explanations greedy, 96 new tokens at most; median of {args.reps} warm calls "
         "(chat: one call)"),
        f"- loading the target, AV, AR and SAE: {load_s:.1f} s", "", *table, "",
        (f"- a scripted audit ({rec.tool_calls} calls: chat, explain 8 positions, sae_features, a second chat turn, "
         f"explain 4 positions; no LLM in the loop): **{rec.wall_s:.1f} s**")], args.append)


if __name__ == "__main__":
    main()
