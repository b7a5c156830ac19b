#!/usr/bin/env python
"""Train a mixbench config: tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] ...

Usage: --help, or the docstring of mixbench/cli/train.py."""

import sys
from pathlib import Path

# This checkout's code runs, whatever mixbench is installed (the package's console entry point
# `mixbench-train` runs the same main() without this line).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixbench.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
