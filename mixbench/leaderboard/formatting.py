"""How a leaderboard cell reads in a table: one set of columns for Markdown, LaTeX and HTML."""

from __future__ import annotations

import math
from collections.abc import Callable

from mixbench.results import METRICS as RUN_METRICS

from .aggregate import ANALYSIS_METRICS, Cell, Leaderboard

DASH = "—"


def num(x: float | None, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def rank_str(rank: float) -> str:
    return f"{rank:g}" if rank == int(rank) else f"{rank:.1f}"


def top1_str(c: Cell) -> str:
    if c.std is None:
        return f"{c.mean:.2f} (1 seed, no error bar)"
    return f"{c.mean:.2f} ± {c.std:.2f}"


def ci_str(c: Cell) -> str:
    return DASH if c.ci_low is None else f"[{c.ci_low:.2f}, {c.ci_high:.2f}]"


def delta_str(c: Cell) -> str:
    if c.is_reference:
        return "ref."
    return num(c.delta, signed=True) + ("*" if c.significant else "")


def p_str(c: Cell) -> str:
    if c.p_value is None:
        return DASH
    return f"{c.p_value:.3f}" if c.p_value >= 0.001 else f"{c.p_value:.1e}"


def cost_str(c: Cell) -> str:
    return DASH if c.rel_s_per_iter is None else f"{c.rel_s_per_iter:.2f}×"


def hours_str(c: Cell) -> str:
    if c.device_hours is None:
        return DASH
    return f"{c.device_hours:.3g} {c.device_kind}-h"


def reported_str(c: Cell) -> str:
    """The published number with the metric it was read with (always named)."""
    if c.reported is None:
        return DASH
    return f"{c.reported.top1:.2f} ({c.reported.metric})"


def ours_as_published_str(c: Cell) -> str:
    """Our cell read the way the published number was (its metric), when computable."""
    comp = c.comparison
    if comp is None or comp.ours is None:
        return DASH
    return f"{comp.ours:.2f} ({comp.metric_label})"


def not_comparable_str(c: Cell) -> str:
    """Why the published number is shown apart (no difference computed), or a dash."""
    comp = c.comparison
    if comp is None or comp.comparable:
        return DASH
    return "; ".join(comp.reasons)


def analysis_str(c: Cell, key: str) -> str:
    """An analysis metric of a cell: mean ± std over the seeds that have it, and how many
    of the cell's seeds those are when not all."""
    s = c.analysis.get(key)
    if s is None:
        return DASH
    text = f"{s.mean:.2f}" if s.std is None else f"{s.mean:.2f} ± {s.std:.2f}"
    return text if s.n == c.n else f"{text} ({s.n} of {c.n} seeds)"


def _analysis_column(key: str, label: str):
    return (
        label,
        lambda c: analysis_str(c, key),
        lambda c: c.analysis[key].mean if key in c.analysis else None,
    )


# (header, formatter, raw value for sorting) in table order; report_md.TEX_COLUMNS names
# columns by index (update it when inserting one).
COLUMNS: list[tuple[str, Callable[[Cell], str], Callable[[Cell], object]]] = [
    ("Rank", lambda c: rank_str(c.rank), lambda c: c.rank),
    ("Method", lambda c: c.method, lambda c: c.method.lower()),
    ("Top-1 (%)", top1_str, lambda c: c.mean),
    ("Seeds", lambda c: str(c.n), lambda c: c.n),
    ("95% CI", ci_str, lambda c: c.ci_low),
    ("Δ vs Vanilla", delta_str, lambda c: c.delta),
    ("p (Welch)", p_str, lambda c: c.p_value),
    ("s/iter vs Vanilla", cost_str, lambda c: c.rel_s_per_iter),
    ("Peak mem (MB)", lambda c: num(c.peak_mem_mb, 0), lambda c: c.peak_mem_mb),
    ("Time/run", hours_str, lambda c: c.device_hours),
    ("Ours (published metric)", ours_as_published_str, lambda c: c.comparison.ours if c.comparison else None),
    ("OpenMixup reported", reported_str, lambda c: c.reported.top1 if c.reported else None),
    ("Ours − reported", lambda c: num(c.diff_vs_reported, signed=True), lambda c: c.diff_vs_reported),
    ("Reported Δ", lambda c: num(c.reported_delta, signed=True), lambda c: c.reported_delta),
    ("Not like for like", not_comparable_str, not_comparable_str),
] + [_analysis_column(m.key, m.label) for m in ANALYSIS_METRICS]  # ECE, FGSM (when present)
TOP1_COLUMN = 2
ANALYSIS_COLUMNS = tuple(range(len(COLUMNS) - len(ANALYSIS_METRICS), len(COLUMNS)))


def visible_columns(cells: list[Cell], candidates=None) -> list[int]:
    """Indices into COLUMNS (of ``candidates``, default all) without the columns that are
    empty for every cell of a table (e.g. OpenMixup's numbers on a dataset it never ran)."""
    candidates = range(len(COLUMNS)) if candidates is None else candidates
    return [i for i in candidates if i <= TOP1_COLUMN or any(COLUMNS[i][1](c) != DASH for c in cells)]


def table_title(key: tuple) -> str:
    dataset, backbone, epochs, setting = key
    return f"{dataset} · {backbone} · {epochs} epochs" + (f" · {setting}" if setting else "")


def metric_note(lb: Leaderboard) -> str:
    """Which metric each number column of a table is."""
    return (
        f"Top-1, Δ, CI and ranks: {lb.metric_label} ({RUN_METRICS[lb.metric].describe(lb.last_n)}). "
        "Ours (published metric) and OpenMixup reported: the metric named in the cell, the "
        "one OpenMixup's table reads; Ours − reported is computed only like for like (same "
        "method settings, dataset, backbone, epochs and metric), otherwise the last column "
        "says why not."
    )


def average_rank_rows(lb: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the overall table: position, method, average rank, per dataset."""
    datasets = lb.datasets
    header = ["#", "Method", "Average rank", "Datasets"] + datasets
    rows = []
    for i, (method, avg, n) in enumerate(lb.average_rank, 1):
        ranks = lb.dataset_ranks[method]
        rows.append(
            [str(i), method, f"{avg:.2f}", str(n)]
            + [f"{ranks[d]:.2f}" if d in ranks else DASH for d in datasets]
        )
    return header, rows


def status_lines(lb: Leaderboard) -> list[str]:
    """Plain sentences about runs that are not in the tables, and why."""
    lines = [
        f"in progress (not counted): {r.name} [{r.dataset}/{r.backbone}/{r.epochs}e "
        f"{r.method} seed {r.seed}], {len(r.history)} evaluations so far"
        for r in lb.in_progress
    ]
    lines += [
        f"failed (not counted): {r.name} [{r.method} seed {r.seed}]"
        + (f": {r.error_message}" if r.error_message else "")
        for r in lb.failed
    ]
    lines += [f"excluded: {r.name} [{r.method} seed {r.seed}]: {why}" for r, why in lb.excluded]
    lines += [
        f"stale analysis (not shown): {r.name} [{r.method} seed {r.seed}]: "
        f"analysis/{kind}.json is older than the run's result.json; run "
        "tools/analysis again on the final checkpoint"
        for r, kind in lb.stale_analyses
    ]
    return lines
