"""Write every report of the leaderboard into one folder."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .aggregate import DEFAULT_ALPHA, DEFAULT_LAST_N, Leaderboard, build_leaderboard
from .report_html import html_report
from .report_md import csv_report, csv_rows, latex_report, markdown_report

DEFAULT_OUT = Path("work_dirs") / "leaderboard"
REPORT_FILES = {
    "markdown": "leaderboard.md",
    "csv": "leaderboard.csv",
    "latex": "leaderboard.tex",
    "html": "index.html",
}


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename (no torn report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def markdown_leaderboard(
    db_url: str | None = None,
    metric: str = "median_last_n",
    last_n: int = DEFAULT_LAST_N,
    filters: dict | None = None,
) -> str:
    """The Markdown leaderboard of the database as a string (to print after a sweep)."""
    return markdown_report(build_leaderboard(db_url, metric=metric, last_n=last_n, filters=filters))


def write_report(
    db_url: str | None = None,
    out_dir: str | os.PathLike = DEFAULT_OUT,
    metric: str = "median_last_n",
    last_n: int = DEFAULT_LAST_N,
    alpha: float = DEFAULT_ALPHA,
    filters: dict | None = None,
    leaderboard: Leaderboard | None = None,
) -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.csv, leaderboard.tex and index.html into
    ``out_dir``; returns {"markdown"|"csv"|"latex"|"html": path}. Logs the table to wandb
    when ``$WANDB_PROJECT`` is set (see :func:`log_to_wandb`)."""
    lb = leaderboard or build_leaderboard(db_url, metric=metric, last_n=last_n, alpha=alpha, filters=filters)
    out = Path(out_dir)
    texts = {
        "markdown": markdown_report(lb),
        "csv": csv_report(lb),
        "latex": latex_report(lb),
        "html": html_report(lb),
    }
    paths = {}
    for kind, name in REPORT_FILES.items():
        paths[kind] = out / name
        write_text_atomic(paths[kind], texts[kind])
    if os.environ.get("WANDB_PROJECT"):
        log_to_wandb(lb, os.environ["WANDB_PROJECT"])
    return paths


def log_to_wandb(lb: Leaderboard, project: str) -> bool:
    """Log the tidy table (one row per cell) to a wandb run of ``project``.

    Offline-safe: ``$WANDB_MODE`` decides; when it is unset, the run is online only if
    ``$WANDB_API_KEY`` is set and offline otherwise (``wandb sync`` uploads it later), so a
    machine without network or credentials never waits on wandb. Never fails the report:
    without wandb, or when wandb cannot start, it says so on stderr and returns False.
    """
    try:
        import wandb
    except ImportError:
        print(
            "leaderboard: WANDB_PROJECT is set but wandb is not installed; "
            "skipping wandb logging (pip install wandb)",
            file=sys.stderr,
        )
        return False
    try:
        rows = csv_rows(lb)
        mode: Any = os.environ.get("WANDB_MODE") or (  # wandb checks the value
            "online" if os.environ.get("WANDB_API_KEY") else "offline"
        )
        run = wandb.init(
            project=project,
            job_type="leaderboard",
            reinit="finish_previous",
            mode=mode,
            config={"metric": lb.metric_label, "alpha": lb.alpha, "filters": lb.filters},
        )
        if rows:
            columns = list(rows[0])
            run.log(
                {
                    "leaderboard": wandb.Table(
                        columns=columns, data=[[str(r[c]) for c in columns] for r in rows]
                    )
                }
            )
        run.finish()
    except Exception as e:  # noqa: BLE001 - logging is optional, the files are the report
        print(
            f"leaderboard: wandb logging failed ({type(e).__name__}: {e}); the report files were written",
            file=sys.stderr,
        )
        return False
    return True
