#!/usr/bin/env python
"""mixbench leaderboard: ingest result.json files into the results database, write reports.

Usage: --help, or the docstring of mixbench/cli/leaderboard.py."""

import sys
from pathlib import Path

# This checkout's code runs, whatever mixbench is installed (the package's console entry point
# `mixbench-leaderboard` runs the same main() without this line).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixbench.cli.leaderboard import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
