#!/usr/bin/env python
"""Grad-CAM maps of a trained run on a few validation images, as a PNG grid
(<work_dir>/analysis/gradcam.png).

    python tools/analysis/gradcam.py CONFIG CHECKPOINT --num-images 8
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixbench.analysis.cli import load_from_args, main_wrapper, run_parser  # noqa: E402


def main(argv=None) -> int:
    p = run_parser(__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=8)
    p.add_argument("--stage", type=int, help="backbone stage to explain (default: the last)")
    p.add_argument("--seed", type=int, default=0, help="which images (a random draw)")
    args = p.parse_args(argv)

    def go():
        from mixbench.analysis.gradcam import run_gradcam

        return run_gradcam(load_from_args(args), args.num_images, args.seed, args.stage)

    return main_wrapper(go)


if __name__ == "__main__":
    sys.exit(main())
