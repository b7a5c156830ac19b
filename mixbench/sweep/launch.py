"""What every backend does around one launch: write the config, build the command and the
environment (GPUs, CPU threads, rendezvous port) of ``tools/train.py``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mixbench.config import dump_config
from mixbench.results import RESULT_FILE, atomic_write_text

from .spec import SweepError, SweepRun
from .state import CONFIG_FILE, LOG_FILE, read_state, write_state

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "tools" / "train.py"


def prepare_run(run: SweepRun) -> dict:
    """Write the run's resolved config into its work dir (before every launch) and return its
    state. Refuses to reuse a work dir whose runs started under a different config."""
    wd = run.work_dir
    wd.mkdir(parents=True, exist_ok=True)
    state = read_state(wd)
    new_hash = run.config_hash
    old_hash = state.get("config_hash")
    started = state.get("launches", 0) > 0 or any((wd / f).exists() for f in (RESULT_FILE, "last_checkpoint"))
    if old_hash and old_hash != new_hash and started:
        raise SweepError(
            f"{wd}: this run already started with another config ({old_hash[:19]}...), and the "
            f"sweep file now resolves to {new_hash[:19]}...; resuming would mix two configs. "
            "Give the sweep a new name (or a new axis value), or delete the run's work dir to redo it."
        )
    dump_config(run.config, wd / CONFIG_FILE)
    repaired = repair_checkpoint_pointer(wd)
    if repaired:
        with open(wd / LOG_FILE, "a") as log:
            log.write(f"\n===== mixbench sweep: {repaired}\n")
    if old_hash != new_hash:
        state = {**state, "config_hash": new_hash}
    state.setdefault("run", run.name)
    write_state(wd, state)
    return state


def repair_checkpoint_pointer(work_dir: Path) -> str | None:
    """Make ``--resume auto`` resumable after a kill at any instant.

    mmengine's CheckpointHook (with ``max_keep_ckpts``) deletes the oldest checkpoint *before*
    saving the next one and rewrites ``last_checkpoint`` only after; a run killed in between
    leaves ``last_checkpoint`` naming a deleted file, and every resume then fails. Point it
    at the newest ``epoch_*.pth``/``iter_*.pth`` still present, or remove it (the run starts
    over) when there is none. Returns what it did, or None when nothing needed fixing."""
    pointer = Path(work_dir) / "last_checkpoint"
    if not pointer.exists():
        return None
    target = Path(pointer.read_text().strip())
    if target.is_file():
        return None
    found = [p for pat in ("epoch_*.pth", "iter_*.pth") for p in Path(work_dir).glob(pat)]
    found = [p for p in found if p.stem.split("_")[-1].isdigit()]
    if found:
        newest = max(found, key=lambda p: int(p.stem.split("_")[-1]))
        atomic_write_text(pointer, str(newest.resolve()))
        return f"last_checkpoint named the missing {target.name}; resuming from {newest.name}"
    pointer.unlink()
    return f"last_checkpoint named the missing {target.name} and no checkpoint is left; starting over"


def train_command(
    run: SweepRun,
    gpus: int = 0,
    port: int | None = None,
    train_script: Path | None = None,
    python: str = sys.executable,
) -> list[str]:
    """``python tools/train.py <wd>/config.yaml --work-dir <wd> --resume auto``; with more
    than one GPU, the same through torchrun (``--launcher pytorch``) on ``port``. An installed
    package without a checkout's ``tools/`` runs ``python -m mixbench.cli.train`` instead."""
    wd = run.work_dir.resolve()
    if train_script is None and not TRAIN_SCRIPT.is_file():
        # an installed package, no checkout: the same main() as a module
        program = ["-m", "mixbench.cli.train"]
    else:
        program = [str(train_script or TRAIN_SCRIPT)]
    args = [str(wd / CONFIG_FILE), "--work-dir", str(wd), "--resume", "auto"]
    if gpus > 1:
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone" if port is None else f"--master_port={port}",
            f"--nproc_per_node={gpus}",
            *program,
            *args,
            "--launcher",
            "pytorch",
        ]
    return [python, *program, *args]


def run_env(
    gpu_ids: Sequence[str] | None, threads: int | None, port: int | None, base: dict | None = None
) -> dict:
    """Environment of one launch: its own GPUs (``CUDA_VISIBLE_DEVICES``; none visible on a
    CPU slot), its share of CPU threads and its own rendezvous port."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if threads:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[key] = str(threads)
    if port:
        env["MASTER_ADDR"] = "127.0.0.1"
        env["MASTER_PORT"] = str(port)
    return env


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``
    (no torch import: the sweep must stay light)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def free_port() -> int:
    """A TCP port free on this host right now (for one slot's torch.distributed rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_log(run: SweepRun, launch: int, cmd: Sequence[str]):
    """Open the run's train.log for appending, with a header naming this launch."""
    log = open(run.work_dir / LOG_FILE, "ab", buffering=0)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log.write(f"\n===== mixbench sweep: launch {launch} at {stamp}: {' '.join(cmd)}\n".encode())
    return log
