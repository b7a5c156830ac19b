"""Run a benchmark sweep (a grid of training runs) on this machine or on a Slurm cluster.

    python tools/sweep.py plan   configs/sweeps/demo_digits.yaml
    python tools/sweep.py run    configs/sweeps/demo_digits.yaml --backend local --slots 2
    python tools/sweep.py run    SWEEP.yaml --backend local --slots 4 --gpus-per-run 2
    python tools/sweep.py run    SWEEP.yaml --backend slurm --partition gpu --array-parallelism 64
    python tools/sweep.py status configs/sweeps/demo_digits.yaml

Idempotent: a finished run is never redone, an interrupted one resumes from its checkpoint,
a failing one is retried --retries times and then marked failed. See docs/sweeps.md.
Exit codes: 0 every run done; 1 some runs failed or remain; 2 bad sweep file or arguments;
130 interrupted (the next `run` picks up where this one stopped).
The installed package runs the same as ``mixbench-sweep``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixbench.config import ConfigError
from mixbench.leaderboard import ingest_paths, markdown_leaderboard, write_report
from mixbench.sweep import LocalPool, SlurmSweep, load_sweep, queued_jobs
from mixbench.sweep.report import console, plan_table, status_table
from mixbench.sweep.slurm import load_jobs


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("plan", "list the runs, their status and estimated cost"),
        ("run", "run every run that is not done"),
        ("status", "pending / running / done / failed, from the work dirs and Slurm"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("sweep", help="sweep file, e.g. configs/sweeps/demo_digits.yaml")
        s.add_argument("--work-root", help="override the sweep file's work_root (default work_dirs)")
        if name != "run":
            continue
        s.add_argument("--backend", choices=["local", "slurm"], default="local")
        s.add_argument("--slots", type=int, default=1, help="local: runs at once (default 1)")
        s.add_argument(
            "--gpus-per-run",
            type=int,
            default=None,
            help="local: GPUs per run (default: the sweep's resources.gpus; 0 = CPU, "
            "cores shared among slots; >1 runs through torchrun)",
        )
        s.add_argument("--partition", help="slurm: partition to submit to")
        s.add_argument(
            "--array-parallelism",
            type=int,
            default=32,
            help="slurm: most array tasks running at once (default 32)",
        )
        s.add_argument(
            "--retries",
            type=int,
            default=1,
            help="times a failing run is relaunched before it is marked failed (default 1)",
        )
        s.add_argument(
            "--retry-failed",
            action="store_true",
            help="give runs marked failed by an earlier sweep a fresh set of retries",
        )
        s.add_argument(
            "--db",
            help="results database for ingesting finished runs (default: the "
            "leaderboard's, $MIXBENCH_RESULTS_DB or work_dirs/results.db)",
        )
        s.add_argument("--no-ingest", action="store_true", help="do not write the results database")
        s.add_argument("--train-script", type=Path, help=argparse.SUPPRESS)  # tests: a fake trainer
        s.add_argument("--poll-s", type=float, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _live_jobs(sweep) -> dict | None:
    jobs = load_jobs(sweep.work_root)
    if not jobs:
        return None
    try:
        return queued_jobs(jobs.values())
    except Exception as e:  # noqa: BLE001 - status must work off the cluster too
        print(f"(no squeue: {e}; showing what the work dirs say)", file=sys.stderr)
        return None


def cmd_run(args, sweep, out) -> int:
    def echo(msg: str) -> None:
        print(msg, flush=True)

    on_done = None
    if not args.no_ingest:

        def on_done(run):
            report = ingest_paths([str(run.work_dir)], db_url=args.db)
            if not report.ok:
                echo(report.summary())

    common = dict(
        retries=args.retries,
        train_script=args.train_script,
        retry_failed=args.retry_failed,
        on_done=on_done,
        echo=echo,
    )
    if args.poll_s is not None:
        common["poll_s"] = args.poll_s
    if args.backend == "local":
        gpus = args.gpus_per_run
        if gpus is None:
            gpus = max(r.resources.gpus for r in sweep.runs)
        pool = LocalPool(sweep.runs, slots=args.slots, gpus_per_run=gpus, **common)
        try:
            result = pool.run()
        except KeyboardInterrupt:
            return 130
    else:
        result = SlurmSweep(
            sweep.runs,
            sweep.work_root,
            partition=args.partition,
            array_parallelism=args.array_parallelism,
            **common,
        ).run()
    out.print(status_table(sweep))
    if not args.no_ingest:
        md = markdown_leaderboard(args.db, **sweep.leaderboard)
        if md:
            out.print(md, markup=False)
        written = write_report(args.db, out_dir=str(sweep.work_root / "leaderboard"), **sweep.leaderboard)
        if written:
            out.print(
                f"Leaderboard report: {written['html']} (open it in a browser; "
                f"also {written['markdown'].name}, {written['csv'].name}, "
                f"{written['latex'].name})",
                markup=False,
            )
    return 0 if len(result["done"]) == len(sweep.runs) else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    out = console()
    try:
        sweep = load_sweep(args.sweep, args.work_root)
        if args.command == "plan":
            out.print(plan_table(sweep, _live_jobs(sweep)))
            return 0
        if args.command == "status":
            out.print(status_table(sweep, _live_jobs(sweep)))
            return 0
        return cmd_run(args, sweep, out)
    except ConfigError as e:
        print(f"sweep error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
