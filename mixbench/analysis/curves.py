"""Training curves of several runs on one figure: training loss and validation top-1 over
epochs, read from the runs' ``result.json`` histories or from the results database
(``epochs`` table). No torch needed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mixbench.results import find_result_files, load_result


def histories_from_results(paths: Iterable[str | os.PathLike]) -> dict[str, list[dict]]:
    """``{run name: history}`` of every result.json under ``paths`` (files or folders)."""
    out: dict[str, list[dict]] = {}
    for path in find_result_files(*paths):
        data = load_result(path)
        out[data["run"]["name"]] = data["history"]
    if not out:
        raise FileNotFoundError(f"no result.json under {', '.join(map(str, paths))}")
    return out


def histories_from_db(db_url: str | None = None, filters: dict | None = None) -> dict[str, list[dict]]:
    """``{run name: history}`` from the results database (``mixbench.leaderboard.db``),
    runs selected by ``filters`` ({column: value}, e.g. ``{"dataset": "cifar100"}``)."""
    from sqlalchemy import select

    from mixbench.leaderboard.db import epochs, make_engine, runs, where_runs

    engine = make_engine(db_url)
    try:
        query = where_runs(select(runs.c.id, runs.c.name), filters or {})
        with engine.connect() as conn:
            named = {r.id: r.name for r in conn.execute(query)}
            out: dict[str, list[dict]] = {name: [] for name in named.values()}
            rows = (
                conn.execute(
                    select(epochs)
                    .where(epochs.c.run_id.in_(list(named)))
                    .order_by(epochs.c.run_id, epochs.c.idx)
                )
                if named
                else []
            )
            for r in rows:
                out[named[r.run_id]].append({"epoch": r.epoch, "top1": r.top1, "train_loss": r.train_loss})
    finally:
        engine.dispose()
    if not out:
        raise LookupError(f"no runs in the results database match {filters or {}}")
    return out


def plot_curves(histories: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """Two panels sharing the epoch axis: training loss (left), validation top-1 (right);
    one colour per run, the same in both panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .common import save_figure

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    colours = plt.get_cmap("tab10" if len(histories) <= 10 else "tab20")
    for i, (name, hist) in enumerate(sorted(histories.items())):
        c = colours(i % colours.N)
        for ax, key in ((ax_loss, "train_loss"), (ax_acc, "top1")):
            pts = [(h["epoch"], h[key]) for h in hist if h.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), "-", marker="o" if len(pts) < 30 else None, ms=3, color=c, label=name)
    ax_loss.set_title("training loss")
    ax_acc.set_title("validation top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
