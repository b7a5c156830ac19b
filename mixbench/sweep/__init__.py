"""Benchmark sweeps: a grid of runs from a sweep file, run by a local pool or on Slurm.

This package launches ``tools/train.py`` as processes (local) or submitit jobs (Slurm); it
never imports torch or the models, so planning and status work on any machine.

    from mixbench.sweep import load_sweep, LocalPool
    sweep = load_sweep("configs/sweeps/demo_digits.yaml")
    LocalPool(sweep.runs, slots=2).run()
"""

from .local import LocalPool
from .slurm import SlurmSweep, check_slurm, queued_jobs
from .spec import Resources, Sweep, SweepError, SweepRun, load_sweep
from .state import effective_status, read_state

__all__ = [
    "LocalPool",
    "SlurmSweep",
    "check_slurm",
    "queued_jobs",
    "Resources",
    "Sweep",
    "SweepError",
    "SweepRun",
    "load_sweep",
    "effective_status",
    "read_state",
]
