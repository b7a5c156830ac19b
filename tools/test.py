#!/usr/bin/env python
"""Evaluate a checkpoint: tools/test.py CONFIG CHECKPOINT [--cfg-options k=v ...]

Usage: --help, or the docstring of mixbench/cli/test.py."""

import sys
from pathlib import Path

# This checkout's code runs, whatever mixbench is installed (the package's console entry point
# `mixbench-test` runs the same main() without this line).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixbench.cli.test import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
