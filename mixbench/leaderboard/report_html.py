"""``index.html``: one static, self-contained page (no server, no CDN, no external file).

Tables sort by clicking a header (a few lines of inline JavaScript); plots are matplotlib
SVGs embedded as ``data:`` images.
"""

from __future__ import annotations

import base64
import html
import math

from . import plots
from .aggregate import Leaderboard
from .formatting import (
    COLUMNS,
    TOP1_COLUMN,
    average_rank_rows,
    metric_note,
    status_lines,
    table_title,
    visible_columns,
)

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;
 margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:18px 32px}
header h1{margin:0 0 6px;font-size:22px}
header p{margin:0;font-size:13px;color:#d0d7de;max-width:1100px;line-height:1.45}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 18px;
 margin:18px 0}
h2{font-size:17px;margin:2px 0 10px}
table{border-collapse:collapse;font-size:13px;margin:4px 0 10px}
.scroll{overflow-x:auto}
th,td{padding:5px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f6f8fa;cursor:pointer;user-select:none;white-space:normal;
 vertical-align:bottom;max-width:110px}
th:hover{background:#eaeef2}
th.asc::after{content:" \\25B2";font-size:9px}
th.desc::after{content:" \\25BC";font-size:9px}
td:nth-child(2),th:nth-child(2){text-align:left}
tr.best td{background:#eef7ee}
tr.best td.top1{font-weight:700}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots img{max-width:100%;border:1px solid #eaeef2;border-radius:6px;background:#fff}
.note{font-size:12px;color:#57606a}
ul.status{font-size:13px;color:#57606a}
"""

_JS = """
function sortTable(th){
  var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex;
  var asc=!th.classList.contains('asc');
  table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
  th.classList.add(asc?'asc':'desc');
  var rows=Array.prototype.slice.call(body.rows);
  function key(r){var v=r.cells[col].getAttribute('data-sort');
    if(v===null||v==='')return null;var n=parseFloat(v);return isNaN(n)?v:n;}
  rows.sort(function(a,b){var x=key(a),y=key(b);
    if(x===y)return 0;if(x===null)return 1;if(y===null)return -1;
    return (x<y?-1:1)*(asc?1:-1);});
  rows.forEach(function(r){body.appendChild(r);});
}
document.querySelectorAll('table.sortable th').forEach(function(th){
  th.addEventListener('click',function(){sortTable(th);});});
"""


def _sort_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _img(svg: str | None, alt: str) -> str:
    if svg is None:
        return ""
    data = base64.b64encode(svg.encode()).decode()
    return f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: list[str], rows: list[tuple[list[str], list, str]], table_id: str) -> str:
    """rows: (texts, sort values, tr class)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for texts, keys, cls in rows:
        tds = "".join(
            f'<td data-sort="{html.escape(_sort_value(k))}"'
            + (' class="top1"' if i == TOP1_COLUMN else "")
            + f">{html.escape(t)}</td>"
            for i, (t, k) in enumerate(zip(texts, keys))
        )
        body.append(f'<tr class="{cls}">{tds}</tr>')
    return (
        f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def html_report(lb: Leaderboard) -> str:
    """The whole leaderboard page as one HTML string."""
    colors = plots.method_colors(c.method for c in lb.cells)
    parts = []
    if lb.average_rank:
        header, rows = average_rank_rows(lb)
        avg = [(r, [r[0], r[1].lower(), r[2], r[3]] + [x.replace("—", "") for x in r[4:]], "") for r in rows]
        parts.append(
            '<section id="overall"><h2>Overall: average rank across datasets</h2>'
            '<p class="note">Rank within each table (1 = best), averaged over a dataset\'s '
            "tables, then over datasets.</p>"
            + _table(header, avg, "average-rank")
            + f'<div class="plots">{_img(plots.rank_heatmap(lb), "rank heatmap")}</div>'
            "</section>"
        )
    budgets = sorted({(k[0], k[1]) for k in lb.tables})
    budget_imgs = [
        _img(plots.accuracy_over_epochs(lb, d, b, colors), f"{d} {b} accuracy over epoch budgets")
        for d, b in budgets
    ]
    if any(budget_imgs):
        parts.append(
            '<section id="epoch-budgets"><h2>Accuracy over epoch budgets</h2>'
            f'<div class="plots">{"".join(budget_imgs)}</div></section>'
        )
    for i, (key, cells) in enumerate(lb.tables.items()):
        title = table_title(key)
        cols = [COLUMNS[i] for i in visible_columns(cells)]
        cell_rows = [
            ([fmt(c) for _, fmt, _ in cols], [raw(c) for _, _, raw in cols], "best" if c.is_best else "")
            for c in cells
        ]
        imgs = _img(
            plots.accuracy_vs_cost(cells, f"{title}: accuracy vs cost", colors), f"{title} accuracy vs cost"
        ) + _img(
            plots.validation_curves(cells, f"{title}: validation top-1", colors), f"{title} validation curves"
        )
        parts.append(
            f'<section class="cell-table"><h2>{html.escape(title)}</h2>'
            f'<p class="metric-note">{html.escape(metric_note(lb))}</p>'
            + _table([h for h, _, _ in cols], cell_rows, f"table-{i}")
            + f'<div class="plots">{imgs}</div></section>'
        )
    notes = status_lines(lb)
    if notes:
        parts.append(
            '<section id="not-counted"><h2>Runs not counted</h2><ul class="status">'
            + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            + "</ul></section>"
        )
    if not lb.tables:
        parts.append("<section><p>No finished runs to show.</p></section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mixbench leaderboard</title><style>{_CSS}</style></head><body>"
        f"<header><h1>mixbench leaderboard</h1><p>{html.escape(lb.protocol().replace('`', ''))}</p></header>"
        f"<main>{''.join(parts)}</main><script>{_JS}</script></body></html>\n"
    )
