"""Evaluate a checkpoint: tools/test.py CONFIG CHECKPOINT [--cfg-options k=v ...]

Prints top-1/top-5 and saves them as JSON (default: <checkpoint dir>/test/test_result.json).
The checkpoint is loaded weights-only (see mixbench/checkpoint.py): one that needs more is
refused unless listed in $MIXBENCH_TRUSTED_CHECKPOINTS.
The installed package runs the same as ``mixbench-test``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mixbench.cli import needs_training_stack


@needs_training_stack("mixbench-test")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Evaluate a trained checkpoint on the test split.")
    p.add_argument("config", help="YAML config (e.g. the run's config.yaml)")
    p.add_argument("checkpoint", help="checkpoint file (.pth)")
    p.add_argument("--work-dir", help="where logs and test_result.json go (default: <checkpoint dir>/test)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    args = p.parse_args(argv)

    from mixbench.config import ConfigError, load_config
    from mixbench.engine.runner import build_runner
    from mixbench.results import atomic_write_json

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        print(f"checkpoint not found: {ckpt}", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir or ckpt.parent / "test")
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg["load_from"] = str(ckpt)
        runner = build_runner(cfg, str(work_dir), launcher=args.launcher)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from mixbench.checkpoint import UnsafeCheckpointError

    try:
        metrics = runner.test()
    except UnsafeCheckpointError as e:
        print(f"checkpoint refused: {e}", file=sys.stderr)
        return 2
    out = {
        "config": args.config,
        "checkpoint": str(ckpt),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    atomic_write_json(work_dir / "test_result.json", out)
    print(json.dumps(out["metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
