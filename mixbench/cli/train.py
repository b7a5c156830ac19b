"""Train a mixbench config: tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] ...

The installed package runs the same as ``mixbench-train``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mixbench.cli import needs_training_stack


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train a classifier with a mixup policy.")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--work-dir", help="output folder (default: work_dirs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from the latest checkpoint in the work dir (auto, the default "
        "when the flag is given alone) or from a checkpoint PATH",
    )
    p.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. method.mixer.alpha=0.2 train_cfg.max_epochs=5",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (randomness.seed)")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms (cuDNN); with the same seed a run is repeatable",
    )
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    p.add_argument(
        "--amp", action="store_true", help="mixed precision: fp16 AMP on CUDA, bf16 autocast on CPU"
    )
    p.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


@needs_training_stack("mixbench-train")
def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from mixbench.config import ConfigError, load_config
    from mixbench.engine.runner import build_runner, result_hook

    try:
        cfg = load_config(args.config, args.cfg_options)
        work_dir = args.work_dir or str(Path("work_dirs") / Path(args.config).stem)
        runner = build_runner(
            cfg,
            work_dir,
            launcher=args.launcher,
            resume=args.resume,
            amp=args.amp,
            deterministic=args.deterministic,
            seed=args.seed,
        )
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from mixbench.checkpoint import UnsafeCheckpointError
    from mixbench.data.io import DatasetError
    from mixbench.engine.hooks import DivergenceError

    try:
        runner.train()
    except BaseException as e:
        hook = result_hook(runner)
        if hook is not None:
            hook.mark_failed(runner, e)
        if isinstance(e, (DivergenceError, DatasetError, UnsafeCheckpointError)):  # says it all
            print(f"training failed: {e}", file=sys.stderr)
            return 2 if isinstance(e, UnsafeCheckpointError) else 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
