"""mixbench leaderboard: ingest result.json files into the results database, write reports.

    python tools/leaderboard.py ingest work_dirs/ [--db URL_OR_PATH]   # + RUN/analysis/*.json
    python tools/leaderboard.py report [--db ...] [--out DIR] [--metric median_last_n|best_last_n|best|last|best_head_median_last_n]
                                       [--last-n 10] [--alpha 0.05] [--filter dataset=cifar100 ...]
    python tools/leaderboard.py show   [--db ...] [--metric ...] [--filter ...]

``--db`` is a SQLAlchemy URL (``postgresql://user:pw@host/db``) or a SQLite file path;
default ``$MIXBENCH_RESULTS_DB`` or ``work_dirs/results.db``.

Exit codes: 0 ok; 2 bad arguments; 3 ``ingest`` rejected at least one file (the others
were ingested; the reasons are printed).
The installed package runs the same as ``mixbench-leaderboard``.
"""

from __future__ import annotations

import argparse
import sys

from mixbench.leaderboard import (
    DEFAULT_ALPHA,
    DEFAULT_LAST_N,
    METRICS,
    build_leaderboard,
    ingest_paths,
    write_report,
)
from mixbench.leaderboard.report_md import markdown_report


def _filters(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(
                f"leaderboard: --filter expects key=value, got {item!r} (e.g. --filter dataset=cifar100)"
            )
        out[key] = value
    return out


def _add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", help="database URL or SQLite path (default: $MIXBENCH_RESULTS_DB or work_dirs/results.db)"
    )
    p.add_argument(
        "--metric", choices=METRICS, default="median_last_n", help="per-run metric (default: median_last_n)"
    )
    p.add_argument(
        "--last-n", type=int, default=DEFAULT_LAST_N, help=f"N of median_last_n (default {DEFAULT_LAST_N})"
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"significance level of Welch's t-test (default {DEFAULT_ALPHA})",
    )
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose KEY (dataset, backbone, epochs, method, seed, name, "
        "config_hash) equals VALUE; repeatable",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_ingest = sub.add_parser(
        "ingest", help="read result.json files (and the analysis/*.json next to them) into the database"
    )
    p_ingest.add_argument("paths", nargs="+", help="work dirs or result.json files")
    p_ingest.add_argument("--db", help="database URL or SQLite path")
    p_report = sub.add_parser("report", help="write leaderboard.md/.csv/.tex and index.html")
    _add_table_args(p_report)
    p_report.add_argument("--out", default="work_dirs/leaderboard", help="output folder")
    p_show = sub.add_parser("show", help="print the Markdown leaderboard")
    _add_table_args(p_show)
    args = parser.parse_args(argv)

    if args.command == "ingest":
        report = ingest_paths(args.paths, db_url=args.db)
        print(report.summary())
        return 0 if report.ok else 3
    try:
        lb = build_leaderboard(
            args.db, metric=args.metric, last_n=args.last_n, alpha=args.alpha, filters=_filters(args.filter)
        )
    except ValueError as e:
        print(f"leaderboard: {e}", file=sys.stderr)
        return 2
    if args.command == "show":
        print(markdown_report(lb))
        return 0
    paths = write_report(out_dir=args.out, leaderboard=lb)
    for kind, path in paths.items():
        print(f"{kind:>8}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
