#!/usr/bin/env python
"""Training loss and validation top-1 over epochs for several runs on one PNG, from their
result.json files (work dirs or files) or from the results database.

    python tools/analysis/curves.py work_dirs/run_a work_dirs/run_b --out curves.png
    python tools/analysis/curves.py --db work_dirs/results.db --filter dataset=cifar100 --out c.png
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", help="run work dirs or result.json files")
    p.add_argument("--db", help="results database (SQLite path or URL) instead of paths")
    p.add_argument(
        "--filter",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="with --db: runs column = value (dataset, backbone, method, ...)",
    )
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    from mixbench.analysis.curves import histories_from_db, histories_from_results, plot_curves
    from mixbench.results import ResultFileError

    if bool(args.paths) == bool(args.db):
        p.error("give run paths or --db (one of them)")
    try:
        filters = dict(kv.split("=", 1) for kv in args.filter)
    except ValueError:
        p.error(f"--filter takes KEY=VALUE pairs, got {args.filter}")
    try:
        hist = histories_from_db(args.db, filters) if args.db else histories_from_results(args.paths)
    except (FileNotFoundError, LookupError, ValueError, ResultFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {plot_curves(hist, args.out, args.title)} ({len(hist)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
