"""Leaderboard plots as SVG text (matplotlib, no pyplot state, no display needed).

- accuracy vs cost per method (the performance-efficiency trade-off OpenMixup draws);
- accuracy over epoch budgets for one dataset and backbone;
- rank heatmap, methods x datasets;
- per-epoch validation curves of one table (mean over seeds).
"""

from __future__ import annotations

import io
from collections import defaultdict

from .aggregate import Cell, Leaderboard

_PALETTE = [
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
]


def method_colors(methods) -> dict[str, str]:
    """A stable color per method (sorted order), the same in every plot of a report; more
    than 10 methods take matplotlib's 20-color ``tab20`` palette."""
    methods = sorted(set(methods))
    palette = _PALETTE
    if len(methods) > len(_PALETTE):
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        tab20 = colormaps["tab20"]  # a list of 20 colors: tab20(i) is the i-th
        palette = [to_hex(tab20(i)) for i in range(tab20.N)]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _svg(fig) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def accuracy_vs_cost(cells: list[Cell], title: str, colors: dict[str, str]) -> str | None:
    """Mean top-1 (error bar: std over seeds) against s/iter relative to Vanilla (or
    absolute s/iter when the table has no Vanilla). None when no cell has a cost."""
    rel = all(c.rel_s_per_iter is not None for c in cells)
    pts = [(c, c.rel_s_per_iter if rel else c.s_per_iter) for c in cells]
    pts = [(c, x) for c, x in pts if x is not None]
    if not pts:
        return None
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot()
    for c, x in pts:
        ax.errorbar(
            [x], [c.mean], yerr=[c.std or 0.0], fmt="o", color=colors[c.method], capsize=3, markersize=6
        )
        ax.annotate(c.method, (x, c.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.margins(x=0.2, y=0.15)  # room for the method labels
    _style(ax, title, "s/iter relative to Vanilla" if rel else "s/iter", "top-1 (%)")
    return _svg(fig)


def accuracy_over_epochs(lb: Leaderboard, dataset: str, backbone: str, colors: dict[str, str]) -> str | None:
    """Mean top-1 per method at each epoch budget; None with fewer than two budgets."""
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for c in lb.cells:
        if c.dataset == dataset and c.backbone == backbone:
            series[c.method].append((c.epochs, c.mean, c.std or 0.0))
    if len({e for pts in series.values() for e, _, _ in pts}) < 2:
        return None
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot()
    for method, pts in sorted(series.items()):
        pts.sort()
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            capsize=3,
            label=method,
            color=colors[method],
        )
    _style(ax, f"{dataset} · {backbone}: accuracy over epoch budgets", "epochs", "top-1 (%)")
    ax.set_xticks(sorted({p[0] for pts in series.values() for p in pts}))
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def rank_heatmap(lb: Leaderboard) -> str | None:
    """Methods (by average rank) x datasets, colored by rank (darker = better)."""
    if not lb.average_rank:
        return None
    import numpy as np

    methods = [m for m, _, _ in lb.average_rank]
    datasets = lb.datasets
    grid = np.array([[lb.dataset_ranks[m].get(d, np.nan) for d in datasets] for m in methods])
    fig = _figure(1.6 + 1.1 * len(datasets), 1.2 + 0.35 * len(methods))
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="YlGnBu_r", aspect="auto")
    ax.set_xticks(range(len(datasets)), datasets, fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    for i in range(len(methods)):
        for j in range(len(datasets)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if grid[i, j] < np.nanmean(grid) else "black",
                )
    ax.set_title("Rank per dataset (1 = best)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    return _svg(fig)


def validation_curves(cells: list[Cell], title: str, colors: dict[str, str]) -> str | None:
    """Top-1 per validation epoch, mean over seeds, one line per method."""
    cells = [c for c in cells if c.curve]
    if not cells:
        return None
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot()
    for c in cells:
        ax.plot(
            [e for e, _ in c.curve],
            [v for _, v in c.curve],
            label=c.method,
            color=colors[c.method],
            linewidth=1.4,
        )
    _style(ax, title, "epoch", "validation top-1 (%)")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)
