#!/usr/bin/env python
"""Occlusion robustness of a trained run: top-1 as 0, 10, ..., 90% of the image patches are
dropped, written to <work_dir>/analysis/occlusion.{json,png}.

    python tools/analysis/occlusion.py CONFIG CHECKPOINT --patch-size 8
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixbench.analysis.cli import load_from_args, main_wrapper, run_parser  # noqa: E402


def main(argv=None) -> int:
    from mixbench.analysis.occlusion import DEFAULT_FRACTIONS

    p = run_parser(__doc__.splitlines()[0])
    p.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS))
    p.add_argument("--patch-size", type=int, help="patch side in pixels (default: image side / 4)")
    p.add_argument("--fill", type=float, default=0.0, help="value of dropped pixels in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    def go():
        from mixbench.analysis.occlusion import run_occlusion

        return run_occlusion(
            load_from_args(args), args.fractions, args.patch_size, args.seed, args.fill, args.batch_size
        )

    return main_wrapper(go)


if __name__ == "__main__":
    sys.exit(main())
