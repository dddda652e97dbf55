"""Terminal tables and a self-contained HTML view of explained transcripts.

The HTML colours each token by its round-trip fve_nrm (red = the explanation lost the activation, green =
it carried it) and shows the explanation on hover and, pinned, on click. No external assets: it opens
offline in any browser.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from nla_audit.nla import ExplainedActivation


def _colour(fve: float | None) -> str:
    if fve is None:
        return "#e0e0e0"
    x = max(0.0, min(1.0, (fve + 0.5) / 1.5))  # -0.5 → red, 1.0 → green
    r, g = int(235 - 120 * x), int(110 + 120 * x)
    return f"rgb({r},{g},120)"


def to_html(rows: Sequence[ExplainedActivation], title: str, tokens: Sequence[str] | None = None) -> str:
    """``tokens``: the whole transcript's tokens; positions without an explanation are shown greyed."""
    data = [r.to_dict() for r in rows]
    by_pos = {r.position: i for i, r in enumerate(rows)}
    seq = list(tokens) if tokens is not None else [r.token or "" for r in rows]
    spans = []
    for p, t in enumerate(seq):
        i = by_pos.get(p) if tokens is not None else p
        if i is None:
            spans.append(f'<span class="tok ctx">{html.escape(t)}</span>')
            continue
        r = rows[i]
        tip = html.escape(f"fve_nrm={_fmt(r.fve_nrm)} cos={r.cos:.3f}\n{r.explanation}")
        spans.append(f'<span class="tok" data-i="{i}" style="background:{_colour(r.fve_nrm)}" title="{tip}">'
                     f"{html.escape(t)}</span>")
    fves = [r.fve_nrm for r in rows if r.fve_nrm is not None]
    mean = f"{sum(fves) / len(fves):.3f}" if fves else "n/a"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}}
#text{{white-space:pre-wrap;line-height:1.9;font-family:ui-monospace,monospace;font-size:14px;border:1px solid #ccc;padding:1em}}
.tok{{border-radius:3px;padding:1px 0;cursor:pointer}} .tok.ctx{{color:#999;cursor:default}}
.tok.sel{{outline:2px solid #000}}
#panel{{margin-top:1em;border:1px solid #ccc;padding:1em;white-space:pre-wrap;min-height:6em;background:#fafafa}}
.legend span{{display:inline-block;width:3em;text-align:center;font-size:12px}}
</style></head><body>
<h2>{html.escape(title)}</h2>
<p>{len(rows)} explained positions · mean fve_nrm {mean} ·
<span class="legend"><span style="background:{_colour(-0.5)}">≤-0.5</span><span style="background:{_colour(0.25)}">0.25</span><span style="background:{_colour(1.0)}">1.0</span></span>
· hover a token for its explanation, click to pin it below.</p>
<div id="text">{''.join(spans)}</div>
<div id="panel">Click a token.</div>
<script>
const rows = {json.dumps(data)};
document.querySelectorAll('.tok[data-i]').forEach(el => el.addEventListener('click', () => {{
  document.querySelectorAll('.tok.sel').forEach(x => x.classList.remove('sel'));
  el.classList.add('sel');
  const r = rows[+el.dataset.i];
  const f = v => v === null ? 'n/a' : v.toFixed(3);
  document.getElementById('panel').textContent =
    `position ${{r.position}}  token ${{JSON.stringify(r.token)}}  fve_nrm ${{f(r.fve_nrm)}}  cos ${{f(r.cos)}}  mse_nrm ${{f(r.mse_nrm)}}  |v| ${{r.norm.toFixed(1)}}` +
    (r.ok ? '' : '  [no <explanation> tags: raw output]') + (r.warning ? '\\n⚠ ' + r.warning : '') + '\\n\\n' + r.explanation;
}}));
</script></body></html>
"""


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def print_table(rows: Sequence[ExplainedActivation], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=True)
    for col in ("pos", "token", "fve_nrm", "cos", "explanation"):
        table.add_column(col, overflow="fold")
    for r in rows:
        flag = "" if r.ok else " [red](untagged)[/red]"
        warn = f"\n[yellow]⚠ {r.warning}[/yellow]" if r.warning else ""
        table.add_row("" if r.position is None else str(r.position), repr(r.token) if r.token is not None else "",
                      _fmt(r.fve_nrm), f"{r.cos:.3f}", r.explanation + flag + warn)
    Console().print(table)
