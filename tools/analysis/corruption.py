#!/usr/bin/env python
"""Corruption robustness of a trained run: top-1 on the 15 CIFAR-C/ImageNet-C corruptions at
5 severities (generated on the fly, or read from released CIFAR-10-C/100-C .npy files with
--released DIR), mean corruption accuracy, written to <work_dir>/analysis/corruption.json.

    python tools/analysis/corruption.py CONFIG CHECKPOINT --corruptions fog contrast
    python tools/analysis/corruption.py CONFIG CHECKPOINT --released data/CIFAR-10-C
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixbench.analysis.cli import load_from_args, main_wrapper, run_parser  # noqa: E402


def main(argv=None) -> int:
    from mixbench.analysis.corruptions import CORRUPTIONS

    p = run_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--corruptions",
        nargs="+",
        choices=CORRUPTIONS,
        help="default: all 15 (with --released: those with a file)",
    )
    p.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--released", metavar="DIR", help="folder with <corruption>.npy and labels.npy (CIFAR-10-C/100-C)"
    )
    args = p.parse_args(argv)

    def go():
        from mixbench.analysis.corruptions import run_corruption

        names = args.corruptions or (None if args.released else CORRUPTIONS)
        return run_corruption(
            load_from_args(args), names, args.severities, args.seed, args.batch_size, args.released
        )

    return main_wrapper(go)


if __name__ == "__main__":
    sys.exit(main())
