"""mixbench.leaderboard: results database, aggregation over seeds, reports.

Reads ``result.json`` files and the results database only: no torch, no mmengine, so
reports build on a laptop. Typical use::

    from mixbench.leaderboard import ingest_paths, write_report, markdown_leaderboard
    print(ingest_paths(["work_dirs/"]).summary())          # SQLite work_dirs/results.db
    paths = write_report(out_dir="work_dirs/leaderboard")  # md, csv, tex, index.html
    print(markdown_leaderboard())

See docs/leaderboard.md for the protocol and the database layout.
"""

from .aggregate import (
    ANALYSIS_METRICS,
    DEFAULT_ALPHA,
    DEFAULT_LAST_N,
    METRICS,
    Cell,
    Leaderboard,
    RunRecord,
    aggregate,
    build_leaderboard,
    load_runs,
)
from .db import default_db_url, make_engine, normalize_db_url
from .ingest import IngestReport, ingest_paths
from .report import REPORT_FILES, log_to_wandb, markdown_leaderboard, write_report
from .reported import canonical_method, load_reported, lookup_reported

__all__ = [
    "ingest_paths",
    "IngestReport",
    "write_report",
    "markdown_leaderboard",
    "build_leaderboard",
    "aggregate",
    "load_runs",
    "Leaderboard",
    "Cell",
    "RunRecord",
    "METRICS",
    "ANALYSIS_METRICS",
    "DEFAULT_LAST_N",
    "DEFAULT_ALPHA",
    "make_engine",
    "normalize_db_url",
    "default_db_url",
    "canonical_method",
    "load_reported",
    "lookup_reported",
    "log_to_wandb",
    "REPORT_FILES",
]
