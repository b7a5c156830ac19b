"""Text reports: Markdown (people), CSV (tidy, one row per cell), LaTeX (papers)."""

from __future__ import annotations

import csv
import io

from .aggregate import ANALYSIS_METRICS, Leaderboard
from .formatting import (
    ANALYSIS_COLUMNS,
    COLUMNS,
    TOP1_COLUMN,
    average_rank_rows,
    metric_note,
    status_lines,
    table_title,
    visible_columns,
)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_md_row(header), "|" + "|".join("---" for _ in header) + "|"] + [_md_row(r) for r in rows]


def markdown_report(lb: Leaderboard) -> str:
    """The whole leaderboard as Markdown: protocol line, one table per (dataset, backbone,
    epochs) with the best mean in bold, the average-rank table, and runs not counted."""
    out = ["# mixbench leaderboard", "", lb.protocol(), ""]
    if not lb.tables:
        out += ["No finished runs to show.", ""]
    for key, cells in lb.tables.items():
        cols = visible_columns(cells)
        rows = []
        for c in cells:
            row = [COLUMNS[i][1](c) for i in cols]
            if c.is_best:
                row[TOP1_COLUMN] = f"**{row[TOP1_COLUMN]}**"
            rows.append(row)
        out += (
            [f"## {table_title(key)}", ""]
            + _md_table([COLUMNS[i][0] for i in cols], rows)
            + ["", metric_note(lb), ""]
        )
    if lb.average_rank:
        header, rows = average_rank_rows(lb)
        out += (
            [
                "## Overall: average rank across datasets",
                "",
                "Rank within each table (1 = best), averaged over a dataset's tables, then over datasets.",
                "",
            ]
            + _md_table(header, rows)
            + [""]
        )
    notes = status_lines(lb)
    if notes:
        out += ["## Runs not counted", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


CSV_FIELDS = [
    "dataset",
    "backbone",
    "epochs",
    "setting",
    "method",
    "metric",
    "n_seeds",
    "seeds",
    "values",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "rank",
    "delta_vs_vanilla",
    "welch_p",
    "significant",
    "alpha",
    "s_per_iter",
    "s_per_iter_vs_vanilla",
    "peak_mem_mb",
    "device_hours_per_run",
    "device_kind",
    "reported_top1",
    "reported_metric",
    "reported_source",
    "reported_settings_source",
    "ours_reported_metric",
    "diff_vs_reported",
    "reported_delta_vs_vanilla",
    "not_comparable_reasons",
]
# per analysis metric: (CSV field suffix, SeedStat attribute)
ANALYSIS_CSV_PARTS = (("mean", "mean"), ("std", "std"), ("n_seeds", "n"))
CSV_FIELDS += [f"{m.key}_{part}" for m in ANALYSIS_METRICS for part, _ in ANALYSIS_CSV_PARTS]


def csv_rows(lb: Leaderboard) -> list[dict]:
    """One dict per cell with raw numbers (empty string for not applicable)."""
    rows = []
    for c in lb.cells:
        r = c.reported
        rows.append(
            dict(
                dataset=c.dataset,
                backbone=c.backbone,
                epochs=c.epochs,
                setting=c.setting,
                method=c.method,
                metric=lb.metric_label,
                n_seeds=c.n,
                seeds=" ".join(map(str, c.seeds)),
                values=" ".join(f"{v:g}" for v in c.values),
                mean=c.mean,
                std=c.std,
                ci95_low=c.ci_low,
                ci95_high=c.ci_high,
                rank=c.rank,
                delta_vs_vanilla=c.delta,
                welch_p=c.p_value,
                significant=c.significant,
                alpha=lb.alpha,
                s_per_iter=c.s_per_iter,
                s_per_iter_vs_vanilla=c.rel_s_per_iter,
                peak_mem_mb=c.peak_mem_mb,
                device_hours_per_run=c.device_hours,
                device_kind=c.device_kind,
                reported_top1=r.top1 if r else None,
                reported_metric=r.metric if r else None,
                reported_source=r.source if r else None,
                reported_settings_source=r.settings_source if r else None,
                ours_reported_metric=c.comparison.ours if c.comparison else None,
                diff_vs_reported=c.diff_vs_reported,
                reported_delta_vs_vanilla=c.reported_delta,
                not_comparable_reasons=("; ".join(c.comparison.reasons) if c.comparison else None),
                **{
                    f"{m.key}_{part}": (getattr(c.analysis[m.key], attr) if m.key in c.analysis else None)
                    for m in ANALYSIS_METRICS
                    for part, attr in ANALYSIS_CSV_PARTS
                },
            )
        )
    return [{k: ("" if v is None else v) for k, v in row.items()} for row in rows]


def csv_report(lb: Leaderboard) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(lb))
    return buf.getvalue()


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "−": "-",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "α": r"$\alpha$",
    "—": "--",
    "·": r"\textperiodcentered{}",
}


def tex_escape(s: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in s)


# A paper table keeps the comparison columns, and ECE / FGSM when some cell has them.
TEX_COLUMNS = (0, 1, 2, 3, 5, 6, 7, 10, 11, 12) + ANALYSIS_COLUMNS


def latex_report(lb: Leaderboard) -> str:
    """One booktabs ``table`` per (dataset, backbone, epochs); best mean in bold."""
    out = [f"% {tex_escape(lb.protocol())}", "% requires \\usepackage{booktabs}", ""]
    for key, cells in lb.tables.items():
        shown = visible_columns(cells, TEX_COLUMNS)
        cols = [COLUMNS[i] for i in shown]
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\caption{"
            + tex_escape(table_title(key))
            + " (top-1 \\%, "
            + tex_escape(lb.metric_label)
            + r")}",
            r"\begin{tabular}{" + "l" * 2 + "r" * (len(cols) - 2) + "}",
            r"\toprule",
            " & ".join(tex_escape(h) for h, _, _ in cols) + r" \\",
            r"\midrule",
        ]
        for c in cells:
            vals = [tex_escape(fmt(c)) for _, fmt, _ in cols]
            if c.is_best:
                top1 = shown.index(TOP1_COLUMN)
                vals[top1] = r"\textbf{" + vals[top1] + "}"
            out.append(" & ".join(vals) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)
