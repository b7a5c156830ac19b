"""Per-run bookkeeping of a sweep: a small JSON file in each run's work dir.

``<work_dir>/sweep_state.json`` (written atomically with
:func:`mixbench.results.atomic_write_json`, so a killed sweep never leaves a torn one)::

    {"schema": 1, "sweep": "demo_digits", "run": "digits/resnet_w8/Mixup_e2_s0",
     "status": "pending" | "running" | "done" | "failed",
     "config_hash": "sha256:...",
     "launches": 2,          # processes/jobs started for this run, ever
     "failures": 0,          # launches that ended without a finished result.json
     "backend": "local" | "slurm", "pid": 123, "host": "node1", "job_id": "77_3",
     "attempts": [{"launch": 1, "start": 1.7e9, "end": 1.7e9, "rc": 0, "outcome": "done"}],
     "failure_kind": "crashed" | "diverged" | ...,   # of the last failed launch
     "log_tail": "..."}      # last lines of train.log when the run failed

An attempt's ``outcome`` is ``done``, ``interrupted`` (stopped by the sweep or by Slurm:
not a failure, the next launch resumes), ``failed`` or ``diverged``. A run whose
result.json says it diverged (``error.kind``, see :mod:`mixbench.results`) is marked
``failed`` at once: the same config and seed diverge again, so retrying only burns time.

The run's own ``result.json`` (written by tools/train.py) is the truth about training; this
file only records what the sweep did. A run whose result.json says ``finished`` is done,
whatever this file says.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from mixbench.results import (
    DETERMINISTIC_FAILURES,
    FAILURE_CRASHED,
    RESULT_FILE,
    ResultFileError,
    atomic_write_json,
    load_result,
)

STATE_FILE = "sweep_state.json"
LOG_FILE = "train.log"
CONFIG_FILE = "config.yaml"
STATE_SCHEMA = 1
LOG_TAIL_LINES = 30


def read_state(work_dir: Path) -> dict:
    """The run's state, or a fresh pending one when the file is missing or unreadable."""
    try:
        data = json.loads((Path(work_dir) / STATE_FILE).read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("schema") == STATE_SCHEMA:
            return data
    except (OSError, ValueError):  # missing, not UTF-8, not JSON: the sweep starts it afresh
        pass
    return {"schema": STATE_SCHEMA, "status": "pending", "launches": 0, "failures": 0, "attempts": []}


def write_state(work_dir: Path, state: dict) -> None:
    atomic_write_json(Path(work_dir) / STATE_FILE, state)


def read_result(work_dir: Path) -> dict | None:
    """The run's result.json, or None when there is none (or it is unreadable)."""
    path = Path(work_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        return load_result(path)
    except ResultFileError:
        return None


def is_finished(work_dir: Path) -> bool:
    result = read_result(work_dir)
    return result is not None and result.get("status") == "finished"


def result_failure_kind(work_dir: Path) -> str | None:
    """``error.kind`` of a failed result.json (``diverged``, ``crashed``...), else None."""
    result = read_result(work_dir)
    if result is None or result.get("status") != "failed":
        return None
    error = result.get("error")
    return error.get("kind") if isinstance(error, dict) else None


def log_tail(work_dir: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the run's train.log ('' if there is none)."""
    path = Path(work_dir) / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int | None, work_dir: Path | None = None) -> bool:
    """Whether ``pid`` runs on this host (and, where /proc exists, is this run's process:
    its command line names the work dir, so a recycled pid is not mistaken for it)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if work_dir is None or not cmdline.exists():
        return True
    try:
        args = cmdline.read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return str(Path(work_dir).resolve()).encode() in args and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def mark_launched(work_dir: Path, state: dict, backend: str, **where) -> dict:
    """Record a launch (increments ``launches``) before the process/job starts."""
    state = dict(state)
    state["status"] = "running"
    state["backend"] = backend
    state["launches"] = state.get("launches", 0) + 1
    state["host"] = socket.gethostname()
    state.update(where)
    attempts = list(state.get("attempts", []))
    if attempts and attempts[-1].get("outcome") is None:
        # the previous launch died without recording its end (its job was killed at once)
        attempts[-1] = {**attempts[-1], "outcome": "interrupted"}
    state["attempts"] = attempts + [
        {"launch": state["launches"], "start": time.time(), "end": None, "rc": None, "outcome": None}
    ]
    write_state(work_dir, state)
    return state


def mark_ended(work_dir: Path, state: dict, rc: int | None, retries: int, interrupted: bool = False) -> dict:
    """Record how a launch ended and decide the run's status.

    - result.json finished -> ``done``;
    - interrupted by the sweep itself (Ctrl-C, a killed sweep, a requeue) -> ``pending``,
      not counted as a failure: the next launch resumes from the checkpoint;
    - a deterministic failure (result.json's ``error.kind`` in
      :data:`~mixbench.results.DETERMINISTIC_FAILURES`: a diverged run) -> ``failed`` at
      once, whatever ``retries`` allows, with the log tail;
    - otherwise a failure: ``pending`` again while ``failures <= retries``, then ``failed``
      with the log tail.
    """
    state = dict(state)
    attempts = list(state.get("attempts", []))
    if attempts and attempts[-1].get("end") is None:
        attempts[-1] = {**attempts[-1], "end": time.time(), "rc": rc}
    if is_finished(work_dir):
        outcome, state["status"] = "done", "done"
    elif interrupted:
        outcome, state["status"] = "interrupted", "pending"
    else:
        kind = result_failure_kind(work_dir) or FAILURE_CRASHED
        state["failures"] = state.get("failures", 0) + 1
        state["failure_kind"] = kind
        deterministic = kind in DETERMINISTIC_FAILURES
        outcome = kind if deterministic else "failed"
        state["status"] = "failed" if deterministic or state["failures"] > retries else "pending"
        state["log_tail"] = log_tail(work_dir)
    if attempts:
        attempts[-1]["outcome"] = outcome
    state["attempts"] = attempts
    state.pop("pid", None)
    write_state(work_dir, state)
    return state


def effective_status(work_dir: Path, state: dict | None = None, live_jobs: dict | None = None) -> str:
    """pending / running / done / failed, from result.json, the state file, and (for Slurm
    jobs) ``live_jobs``, a {job_id: slurm state} map from squeue."""
    if is_finished(work_dir):
        return "done"
    state = state if state is not None else read_state(work_dir)
    status = state.get("status", "pending")
    if status != "running":
        return "failed" if status == "failed" else "pending"
    if state.get("backend") == "slurm":
        job = state.get("job_id")
        if live_jobs is None:
            return "running"
        return "running" if job in live_jobs else "pending"
    if state.get("host") not in (None, socket.gethostname()):
        return "running"  # on another machine: trust the file
    return "running" if pid_alive(state.get("pid"), work_dir) else "pending"
