"""The command line shared by tools/analysis/*.py: ``CONFIG CHECKPOINT [options]``."""

from __future__ import annotations

import argparse
import json
import sys


def run_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("config", help="the run's config (e.g. <work_dir>/config.yaml)")
    p.add_argument("checkpoint", help="checkpoint .pth (e.g. <work_dir>/epoch_200.pth)")
    p.add_argument("--work-dir", help="where analysis/<name>.json goes (default: the checkpoint's folder)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--max-samples", type=int, help="evaluate the first N validation images only")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p


def load_from_args(args: argparse.Namespace):
    """The :class:`~mixbench.analysis.common.LoadedRun` the common options describe."""
    import torch

    from .common import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    return load_run(
        args.config, args.checkpoint, args.cfg_options, args.work_dir, args.max_samples, args.device
    )


def main_wrapper(fn) -> int:
    """Run ``fn()``, print its result's summary as JSON; user errors -> message, exit 2."""
    from mixbench.config import ConfigError

    try:
        result = fn()
    except (ConfigError, FileNotFoundError, ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.get("summary", {}), indent=1))
    if result.get("json"):
        print(f"wrote {result['json']}")
    return 0
