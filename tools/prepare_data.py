#!/usr/bin/env python
"""Check a benchmark dataset's layout, or write its cached index.

Usage: --help, or the docstring of mixbench/cli/prepare_data.py."""

import sys
from pathlib import Path

# This checkout's code runs, whatever mixbench is installed (the package's console entry point
# `mixbench-prepare-data` runs the same main() without this line).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixbench.cli.prepare_data import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
