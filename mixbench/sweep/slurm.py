"""The Slurm backend: runs go to a Slurm cluster as submitit job arrays.

Runs with the same resources form one array (``--array-parallelism`` caps how many tasks
run at once); each task requests the run's GPUs, CPUs, memory and time limit from the sweep
file and runs ``tools/train.py ... --resume auto`` (through torchrun when it has more than one
GPU). Preemption and time-outs use submitit's mechanism: Slurm signals the job (USR2, 90 s
before its time limit by default), submitit calls :meth:`TrainJob.checkpoint`, which hands
back the same job, and requeues it with ``scontrol requeue``; the requeued task resumes from
the last checkpoint of its work dir. A job requeued by an administrator or by
``scontrol requeue`` resumes the same way.

The submitting process records the job ids in ``<work_root>/slurm_jobs.json``, waits with
``squeue`` until its jobs have left the queue, then resubmits runs that failed (up to
``--retries`` failures each). Killed and restarted, it waits for the jobs still queued rather
than submitting them twice.

A trainer that dies with an error is told apart from one that Slurm stopped by what Slurm
says, not by the return code: when tools/train.py ends without finishing, the task asks
``scontrol show job`` for its own job. A job still ``RUNNING`` and not requeued since the task
started means the trainer died on its own (a segfault, an out-of-memory kill, an exception):
a failure, retried ``--retries`` times, then marked failed with the log tail. A job that is
being requeued (its ``Restarts`` count went up), preempted, cancelled or timed out is an
interruption: not counted, the requeued task resumes from the checkpoint.
"""

from __future__ import annotations

import collections
import getpass
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mixbench.results import atomic_write_json

from .launch import REPO_ROOT, open_log, prepare_run, run_env, train_command
from .spec import Resources, SweepError, SweepRun
from .state import effective_status, mark_ended, mark_launched, read_state, write_state

JOBS_FILE = "slurm_jobs.json"
START_HINT = (
    "no Slurm here: `sinfo` is not on PATH or no controller answers. On a laptop or "
    "in CI start a single-node cluster with `sudo bash tools/ci/start_slurm.sh`"
)


def check_slurm() -> None:
    """Raise :class:`SweepError` naming tools/ci/start_slurm.sh unless a controller answers."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise SweepError(START_HINT)
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise SweepError(f"{START_HINT} ({e})") from e
    if proc.returncode != 0:
        raise SweepError(f"{START_HINT} (sinfo: {proc.stderr.strip()})")


def queued_jobs(job_ids=None) -> dict:
    """``{job_id: state}`` of this user's jobs in ``squeue`` (array tasks one per line,
    ``123_4``), restricted to ``job_ids`` when given."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise SweepError(f"squeue failed: {out.stderr.strip()}. {START_HINT}")
    jobs = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    if job_ids is not None:
        wanted = set(job_ids)
        jobs = {j: s for j, s in jobs.items() if j in wanted}
    return jobs


#: the ``scontrol show job`` state of a job that Slurm lets run (any other: Slurm is stopping it)
RUNNING_STATE = "RUNNING"


def job_info(job_id: str) -> dict | None:
    """``{field: value}`` of ``scontrol show job JOB_ID`` (JobState, Restarts, Reason...), or
    None when the controller does not answer. For an array task give ``ARRAYID_TASKID``
    (``37_1``): a bare array id lists every task of the array."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return None
    return dict(w.split("=", 1) for w in lines[0].split() if "=" in w)


def stopped_by_slurm(job_id: str, restarts_at_start: int, rc: int | None) -> tuple[bool, str]:
    """Whether the trainer of job ``job_id`` (which returned ``rc``) was stopped by Slurm (a
    requeue, preemption, time limit or scancel: an interruption) rather than having died
    on its own (a crash); and the evidence, for the log.

    Slurm decides: the job's state is not ``RUNNING`` any more, or its ``Restarts`` count is
    above ``restarts_at_start`` (``$SLURM_RESTART_COUNT`` when the task started). Only when
    ``scontrol`` does not answer does the signal decide: SIGTERM/SIGINT/SIGHUP/SIGUSR1/2 (what
    Slurm and submitit send) count as an interruption, any other death as a crash."""
    info = job_info(job_id)
    if info is not None and "JobState" in info:
        state, restarts = info["JobState"], int(info.get("Restarts", "0") or 0)
        stopped = state != RUNNING_STATE or restarts > restarts_at_start
        return (
            stopped,
            f"Slurm says job {job_id} is {state} (restarts {restarts}, {restarts_at_start} at start)",
        )
    sig = _signal_name(rc)
    stopped = sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")
    return stopped, f"scontrol did not answer; the trainer ended by {sig or f'exit code {rc}'}"


def _signal_name(rc: int | None) -> str | None:
    if rc is None or rc >= 0:
        return None
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


class TrainJob:
    """One run as a submitit job: runs tools/train.py in the work dir, resumes on requeue.

    Picklable and stateless (everything lives in the work dir), so its :meth:`checkpoint`
    simply resubmits itself (submitit's ``Checkpointable`` contract)."""

    def __init__(self, run: SweepRun, retries: int, train_script: Path | None = None):
        self.run, self.retries, self.train_script = run, retries, train_script

    def __call__(self) -> str:
        import submitit

        run = self.run
        env = submitit.JobEnvironment()
        gpus = run.resources.gpus
        cmd = train_command(run, gpus, None, self.train_script)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        state = mark_launched(
            run.work_dir, read_state(run.work_dir), "slurm", job_id=env.job_id, pid=os.getpid()
        )
        log = open_log(run, state["launches"], cmd)
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=run_env(None, run.resources.cpus if not gpus else None, None),
        )
        try:
            rc = proc.wait()
        except BaseException:
            # preempted / timed out: submitit's handler has requeued us and Slurm is about to
            # kill the job; record that first, then stop training
            mark_ended(run.work_dir, read_state(run.work_dir), proc.poll(), self.retries, interrupted=True)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            raise
        interrupted = False
        if rc != 0:
            interrupted, evidence = stopped_by_slurm(env.job_id, restarts, rc)  # "37_1" for a task
            how = f"killed by {_signal_name(rc)}" if rc < 0 else f"exited with {rc}"
            verdict = (
                "stopped by Slurm: resumes when requeued" if interrupted else "a crash: counted as a failure"
            )
            log.write(f"\n===== mixbench sweep: tools/train.py {how}; {evidence}: {verdict}\n".encode())
        log.close()
        state = mark_ended(run.work_dir, read_state(run.work_dir), rc, self.retries, interrupted=interrupted)
        if state["status"] != "done":
            raise RuntimeError(
                f"{run.name}: tools/train.py exited with {rc}; see {run.work_dir / 'train.log'}"
            )
        return run.name

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _executor(
    folder: Path, res: Resources, partition: str | None, array_parallelism: int, extra: dict | None = None
):
    import submitit

    ex = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=3)
    params = dict(
        ntasks_per_node=1,
        nodes=1,
        cpus_per_task=max(1, res.cpus),
        mem=f"{max(1, int(res.mem_gb * 1024))}M",
        time=max(1, res.time_min),
        array_parallelism=array_parallelism,
        job_name="mixbench",
        signal_delay_s=min(90, max(10, res.time_min * 60 // 4)),
        setup=[f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
    )
    if partition:
        params["partition"] = partition
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    params.update(extra or {})
    ex.update_parameters(**params)
    return ex


class SlurmSweep:
    """Submit the runs that are not done, wait for them, resubmit failures (``retries``)."""

    def __init__(
        self,
        runs: list,
        work_root: Path,
        partition: str | None = None,
        array_parallelism: int = 32,
        retries: int = 1,
        train_script: Path | None = None,
        retry_failed: bool = False,
        on_done: Callable[[SweepRun], None] | None = None,
        echo: Callable[[str], None] = print,
        poll_s: float = 5.0,
        extra_params: dict | None = None,
    ):
        check_slurm()
        self.runs, self.work_root, self.partition = runs, Path(work_root), partition
        self.array_parallelism, self.retries, self.train_script = array_parallelism, retries, train_script
        self.retry_failed, self.on_done, self.echo, self.poll_s = retry_failed, on_done, echo, poll_s
        self.extra_params = extra_params

    def submit(self, runs: list) -> dict:
        """Submit ``runs`` as job arrays (one per distinct resource request); returns and
        records ``{run name: job id}`` in ``<work_root>/slurm_jobs.json``."""
        groups: dict = {}
        for run in runs:
            prepare_run(run)
            groups.setdefault(run.resources, []).append(run)
        jobs = load_jobs(self.work_root)
        for res, group in groups.items():
            ex = _executor(
                self.work_root / ".submitit", res, self.partition, self.array_parallelism, self.extra_params
            )
            with ex.batch():
                handles = [ex.submit(TrainJob(run, self.retries, self.train_script)) for run in group]
            for run, handle in zip(group, handles):
                jobs[run.name] = handle.job_id
                self.echo(f"submit {run.name}  (job {handle.job_id})")
            atomic_write_json(self.work_root / JOBS_FILE, jobs)
        return jobs

    def wait(self, job_ids) -> None:
        """Block until none of ``job_ids`` is in ``squeue`` any more."""
        job_ids = set(job_ids)
        last = None
        while True:
            live = queued_jobs(job_ids)
            if not live:
                return
            counts = collections.Counter(live.values())
            summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
            if summary != last:
                self.echo(f"slurm: {len(live)} jobs in the queue ({summary})")
                last = summary
            time.sleep(self.poll_s)

    def _reconcile(self, jobs: dict) -> None:
        """Runs whose job left the queue while their state still says running died without
        a word (node failure, scancel, out of memory): count a failure."""
        live = queued_jobs(jobs.values())
        for run in self.runs:
            state = read_state(run.work_dir)
            if state.get("status") == "running" and jobs.get(run.name) not in live:
                mark_ended(run.work_dir, state, None, self.retries)

    def run(self) -> dict:
        """Submit, wait, resubmit failures; returns ``{status: [names]}`` over all runs."""
        jobs = load_jobs(self.work_root)
        if self.retry_failed:
            for run in self.runs:
                state = read_state(run.work_dir)
                if state.get("status") == "failed":
                    write_state(run.work_dir, {**state, "status": "pending", "failures": 0})
        for _ in range(self.retries + 2):  # first submission + one round per allowed retry
            self._reconcile(jobs)
            live = queued_jobs(jobs.values())
            todo = [
                run
                for run in self.runs
                if jobs.get(run.name) not in live
                and effective_status(run.work_dir, live_jobs=live) == "pending"
            ]
            if not todo and not live:
                break
            if todo:
                jobs = self.submit(todo)
            self.wait(jobs[run.name] for run in self.runs if run.name in jobs)
        self._reconcile(jobs)
        out: dict = {"done": [], "failed": [], "pending": [], "running": []}
        for run in self.runs:
            status = effective_status(run.work_dir, live_jobs={})
            out[status].append(run.name)
            if status == "done" and self.on_done is not None:
                self.on_done(run)
        return out


def load_jobs(work_root: Path) -> dict:
    """``{run name: slurm job id}`` of a sweep's submissions ({} when none)."""
    try:
        return json.loads((Path(work_root) / JOBS_FILE).read_text())
    except (OSError, ValueError):
        return {}
