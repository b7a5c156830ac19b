#!/usr/bin/env python
"""Run a benchmark sweep (a grid of training runs) on this machine or on a Slurm cluster.

Usage: --help, or the docstring of mixbench/cli/sweep.py."""

import sys
from pathlib import Path

# This checkout's code runs, whatever mixbench is installed (the package's console entry point
# `mixbench-sweep` runs the same main() without this line).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixbench.cli.sweep import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
