"""The local backend: a pool of N slots on one machine, each running one training process
at a time with its own GPUs (``CUDA_VISIBLE_DEVICES``) or, on a CPU machine, its share of
the cores (``OMP_NUM_THREADS``), and its own rendezvous port.

The pool is a single-threaded loop over ``subprocess.Popen`` (no threads: the children are
started from the main thread, so ``PR_SET_PDEATHSIG`` ties them to the sweep). When the
sweep dies (Ctrl-C, SIGTERM, even ``kill -9``) its children are stopped with it; their last
checkpoints stay, and the next ``tools/sweep.py run`` resumes them with ``--resume auto``. A
child that outlived a sweep (no PDEATHSIG outside Linux) is adopted, not started twice.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .launch import cpu_count, free_port, open_log, prepare_run, run_env, train_command, visible_gpus
from .spec import SweepError, SweepRun
from .state import effective_status, mark_ended, mark_launched, pid_alive, read_state, write_state

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class _SweepStopped(Exception):
    """SIGTERM or SIGINT reached the sweep: stop the children, keep their checkpoints."""


class _Adopted:
    """A training process left running by an earlier sweep; polled by pid."""

    def __init__(self, pid: int, work_dir: Path):
        self.pid, self.work_dir, self.returncode = pid, work_dir, None

    def poll(self):
        if self.returncode is None and not pid_alive(self.pid, self.work_dir):
            self.returncode = -1  # exit code unknown: the result file decides
        return self.returncode

    def send_signal(self, sig) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> None:
        end = time.time() + timeout
        while self.poll() is None:
            if time.time() > end:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.1)


@dataclass
class _Active:
    run: SweepRun
    proc: object
    slot: int | None
    state: dict
    log: object = None


class LocalPool:
    """Run ``runs`` on ``slots`` slots; retry failures up to ``retries`` times.

    ``gpus_per_run`` > 0 gives slot ``i`` GPUs ``[i*k, (i+1)*k)`` of the visible ones (more
    than one: torchrun); 0 runs on CPU with ``cpu_count() // slots`` threads per slot.
    ``train_script`` replaces tools/train.py (tests use a tiny fake one).
    ``on_done(run)`` is called for each run that finishes (ingest into the results DB).
    """

    def __init__(
        self,
        runs: list,
        slots: int = 1,
        gpus_per_run: int = 0,
        retries: int = 1,
        train_script: Path | None = None,
        retry_failed: bool = False,
        on_done: Callable[[SweepRun], None] | None = None,
        echo: Callable[[str], None] = print,
        poll_s: float = 0.1,
    ):
        if slots < 1:
            raise SweepError(f"--slots must be at least 1, got {slots}")
        self.runs, self.slots, self.retries = runs, slots, retries
        self.gpus_per_run, self.train_script = gpus_per_run, train_script
        self.retry_failed, self.on_done, self.echo, self.poll_s = retry_failed, on_done, echo, poll_s
        self.slot_gpus: list = [None] * slots
        self.threads: int | None = None
        if gpus_per_run > 0:
            gpus = visible_gpus()
            if len(gpus) < slots * gpus_per_run:
                raise SweepError(
                    f"{slots} slots x {gpus_per_run} GPUs per run need {slots * gpus_per_run} GPUs, but "
                    f"{len(gpus)} are visible ({','.join(gpus) or 'none'}); lower --slots or "
                    "--gpus-per-run, or use --gpus-per-run 0 for CPU"
                )
            self.slot_gpus = [gpus[i * gpus_per_run : (i + 1) * gpus_per_run] for i in range(slots)]
        else:
            self.slot_gpus = [[] for _ in range(slots)]  # hide GPUs from CPU runs
            self.threads = max(1, cpu_count() // slots)
        self.ports = [free_port() for _ in range(slots)]

    # -- one launch -------------------------------------------------------------------
    def _launch(self, run: SweepRun, slot: int) -> _Active:
        state = prepare_run(run)
        cmd = train_command(run, self.gpus_per_run, self.ports[slot], self.train_script)
        env = run_env(self.slot_gpus[slot], self.threads, self.ports[slot])
        state = mark_launched(run.work_dir, state, "local", slot=slot, pid=None)
        log = open_log(run, state["launches"], cmd)
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        state["pid"] = proc.pid
        write_state(run.work_dir, state)
        self.echo(f"start  {run.name}  (slot {slot}, launch {state['launches']}, pid {proc.pid})")
        return _Active(run, proc, slot, state, log)

    def _finish(self, act: _Active, interrupted: bool = False) -> str:
        if act.log is not None:
            act.log.close()
        rc = act.proc.returncode
        state = mark_ended(
            act.run.work_dir,
            read_state(act.run.work_dir) if isinstance(act.proc, _Adopted) else act.state,
            rc,
            self.retries,
            interrupted=interrupted,
        )
        status = state["status"]
        if status == "done":
            self.echo(f"done   {act.run.name}")
            if self.on_done is not None:
                self.on_done(act.run)
        elif status == "failed":
            self.echo(
                f"FAILED {act.run.name} (rc {rc}, {state['failures']} failures); last lines of "
                f"{act.run.work_dir / 'train.log'}:\n{state.get('log_tail', '')}"
            )
        elif not interrupted and state.get("failures"):
            self.echo(f"retry  {act.run.name} (rc {rc}, failure {state['failures']} of {self.retries + 1})")
        return status

    def _stop_all(self, active: list) -> None:
        for act in active:
            act.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 30
        for act in active:
            try:
                act.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                act.proc.send_signal(signal.SIGKILL)
                act.proc.wait(timeout=10)
            self._finish(act, interrupted=True)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict:
        """Run every run that is not done (nor failed, unless ``retry_failed``); return
        ``{status: [names]}`` over all runs."""
        todo: collections.deque = collections.deque()
        active: list = []
        for run in self.runs:
            state = read_state(run.work_dir)
            status = effective_status(run.work_dir, state)
            if status == "running" and state.get("backend") == "local" and state.get("pid"):
                active.append(_Active(run, _Adopted(state["pid"], run.work_dir.resolve()), None, state))
                self.echo(f"adopt  {run.name} (still running from an earlier sweep, pid {state['pid']})")
            elif status == "done" and state.get("status") == "running":
                # finished just as its sweep died: record the outcome (and ingest it) now
                mark_ended(run.work_dir, state, None, self.retries, interrupted=True)
                if self.on_done is not None:
                    self.on_done(run)
            elif status == "failed" and self.retry_failed:
                write_state(run.work_dir, {**state, "status": "pending", "failures": 0})
                todo.append(run)
            elif status == "pending":
                if state.get("status") == "running":  # its sweep died with it: resume, no failure
                    mark_ended(run.work_dir, state, None, self.retries, interrupted=True)
                todo.append(run)

        for run in todo:  # write every config first: a changed sweep file fails before any launch
            prepare_run(run)

        def stop(signum, frame):
            raise _SweepStopped(signal.Signals(signum).name)

        old_handlers = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while todo or active:
                busy = {a.slot for a in active}
                free = [s for s in range(self.slots) if s not in busy]
                while todo and free and len(active) < self.slots:
                    active.append(self._launch(todo.popleft(), free.pop(0)))
                time.sleep(self.poll_s)
                for act in list(active):
                    if act.proc.poll() is None:
                        continue
                    active.remove(act)
                    if self._finish(act, interrupted=isinstance(act.proc, _Adopted)) == "pending":
                        todo.append(act.run)
        except (_SweepStopped, KeyboardInterrupt) as e:
            self.echo(
                f"sweep stopped ({e or 'SIGINT'}): stopping {len(active)} runs; their checkpoints "
                "stay and the next `tools/sweep.py run` resumes them"
            )
            self._stop_all(active)
            raise KeyboardInterrupt from None
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        out: dict = {"done": [], "failed": [], "pending": [], "running": []}
        for run in self.runs:
            out[effective_status(run.work_dir)].append(run.name)
        return out
