#!/usr/bin/env python
"""Cost of a trained run's model: parameters, FLOPs per image at each input size and
inference throughput, written to <work_dir>/analysis/cost.json.

    python tools/analysis/cost.py CONFIG CHECKPOINT --input-sizes 32 64 --batch-size 128
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixbench.analysis.cli import load_from_args, main_wrapper, run_parser  # noqa: E402


def main(argv=None) -> int:
    p = run_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--input-sizes",
        type=int,
        nargs="+",
        default=[],
        help="extra square input sizes (the validation size is always included)",
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--no-throughput", action="store_true", help="count parameters and FLOPs only")
    args = p.parse_args(argv)

    def go():
        from mixbench.analysis.cost import run_cost

        return run_cost(
            load_from_args(args),
            args.input_sizes,
            args.batch_size,
            args.warmup,
            args.iters,
            not args.no_throughput,
        )

    return main_wrapper(go)


if __name__ == "__main__":
    sys.exit(main())
