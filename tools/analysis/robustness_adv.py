#!/usr/bin/env python
"""Adversarial robustness of a trained run: top-1 under FGSM and PGD (L-inf, pixel space,
eval mode), written to <work_dir>/analysis/adversarial.json.

    python tools/analysis/robustness_adv.py CONFIG CHECKPOINT --eps 8 4 --pgd-steps 10
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixbench.analysis.cli import load_from_args, main_wrapper, run_parser  # noqa: E402


def main(argv=None) -> int:
    p = run_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--eps", type=float, nargs="+", default=[8, 4], help="L-inf radii in grey levels (x/255), default 8 4"
    )
    p.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"], choices=["fgsm", "pgd"])
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--pgd-step-size", type=float, help="PGD step in grey levels (default eps/4)")
    p.add_argument("--seed", type=int, default=0, help="seed of PGD's random start")
    args = p.parse_args(argv)

    def go():
        from mixbench.analysis.adversarial import run_adversarial

        step = None if args.pgd_step_size is None else args.pgd_step_size / 255
        return run_adversarial(
            load_from_args(args),
            [e / 255 for e in args.eps],
            args.attacks,
            args.pgd_steps,
            step,
            args.batch_size,
            args.seed,
        )

    return main_wrapper(go)


if __name__ == "__main__":
    sys.exit(main())
