#!/usr/bin/env python
"""Calibration of a trained run: ECE (equal-width bins), adaptive ECE, NLL, Brier score and a
reliability diagram, written to <work_dir>/analysis/calibration.{json,png}.

    python tools/analysis/calibration.py work_dirs/RUN/config.yaml work_dirs/RUN/epoch_200.pth
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixbench.analysis.cli import load_from_args, main_wrapper, run_parser  # noqa: E402


def main(argv=None) -> int:
    p = run_parser(__doc__.splitlines()[0])
    p.add_argument("--bins", type=int, default=15, help="number of confidence bins (default 15)")
    args = p.parse_args(argv)

    def go():
        from mixbench.analysis.calibration import run_calibration

        return run_calibration(load_from_args(args), args.bins, args.batch_size)

    return main_wrapper(go)


if __name__ == "__main__":
    sys.exit(main())
