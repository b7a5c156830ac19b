"""The Slurm backend against a real single-node Slurm (start it with tools/ci/start_slurm.sh):
a small sweep submitted through submitit, waited for with squeue, one job requeued mid-run
(``scontrol requeue``) and resumed from its checkpoint."""

import json
import subprocess

import pytest
from mbtest.sweep import FAKE_TRAIN, env, fake_sweep, real_digits_sweep, run_sweep, state, sweep_cmd, wait_for

from mixbench.results import load_result
from mixbench.sweep import SweepError, check_slurm, load_sweep, queued_jobs

EPOCHS = 3


def _require_slurm() -> None:
    try:
        check_slurm()
    except SweepError as e:
        pytest.fail(f"Slurm is not running: {e}")


def _wait_until_relaunched(job: str, work_dir, proc, what: str) -> None:
    def relaunched():
        # Slurm holds a requeued job back (reason BeginTime, ~2 minutes); let it start now
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        return state(work_dir)["launches"] >= 2

    wait_for(relaunched, 300, f"{what} job {job} to start again", proc, poll=1)


def test_slurm_sweep_completes_and_a_requeued_job_resumes_from_its_checkpoint(tmp_path):
    _require_slurm()
    path = real_digits_sweep(
        tmp_path,
        "e2e_slurm",
        {"Mixup": {"type": "Mixup", "alpha": 1.0}},
        seeds=(0, 1),
        epochs=EPOCHS,
        train_samples=256,
    )
    sweep = load_sweep(path)
    victim, other = sweep.runs
    proc = subprocess.Popen(
        sweep_cmd("run", path, "--backend", "slurm", "--no-ingest", "--poll-s", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    jobs_file = sweep.work_root / "slurm_jobs.json"

    def mid_training():
        try:
            result = json.loads((victim.work_dir / "result.json").read_text())
        except (OSError, ValueError):
            return False
        return result["status"] == "running" and len(result["history"]) >= 1

    wait_for(mid_training, 400, f"{victim.name} to finish its first epoch on Slurm", proc, poll=0.05)
    job = json.loads(jobs_file.read_text())[victim.name]
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, text=True)
    _wait_until_relaunched(job, victim.work_dir, proc, "the requeued")
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    assert not queued_jobs(json.loads(jobs_file.read_text()).values())

    for run in sweep.runs:
        result = load_result(run.work_dir)
        assert result["status"] == "finished", run.name
        assert [h["epoch"] for h in result["history"]] == list(range(1, EPOCHS + 1))
        assert state(run.work_dir)["backend"] == "slurm" and state(run.work_dir)["failures"] == 0
    st = state(victim.work_dir)
    assert st["launches"] == 2 and [a["outcome"] for a in st["attempts"]] == ["interrupted", "done"]
    assert st["job_id"] == job  # the same array task, requeued
    assert (
        "resumed epoch: 1" in (victim.work_dir / "train.log").read_text()
        or "resumed epoch: 2" in (victim.work_dir / "train.log").read_text()
    )
    assert state(other.work_dir)["launches"] == 1

    status = run_sweep("status", path)
    assert "2/2 done" in status.stdout, status.stdout + status.stderr
    again = run_sweep("run", path, "--backend", "slurm", "--no-ingest", "--poll-s", "1")
    assert again.returncode == 0 and "submit" not in again.stdout  # nothing left to submit


def test_preemption_signal_checkpoints_requeues_and_resumes_through_submitit(tmp_path):
    """USR2 is what Slurm sends before a time limit or on preemption (``--signal USR2@90``):
    submitit calls TrainJob.checkpoint and requeues the task, which resumes (fake trainer)."""
    _require_slurm()
    path = fake_sweep(tmp_path, "preempted", epochs=8, epoch_s=0.5, seeds=(0,))
    sweep = load_sweep(path)
    run = sweep.runs[0]
    proc = subprocess.Popen(
        sweep_cmd(
            "run", path, "--backend", "slurm", "--no-ingest", "--poll-s", "1", "--train-script", FAKE_TRAIN
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    wait_for(lambda: (run.work_dir / "fake_ckpt").exists(), 120, "the job to start training", proc)
    job = json.loads((sweep.work_root / "slurm_jobs.json").read_text())[run.name]
    subprocess.run(["scancel", "--signal", "USR2", job], check=True)
    _wait_until_relaunched(job, run.work_dir, proc, "the preempted")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-3000:]
    st = state(run.work_dir)
    assert [a["outcome"] for a in st["attempts"]] == ["interrupted", "done"] and st["failures"] == 0
    launches = [json.loads(line) for line in (run.work_dir / "fake_launches").read_text().splitlines()]
    assert launches[0]["start_epoch"] == 0 and launches[1]["start_epoch"] > 0  # resumed
    submitit_log = "".join(p.read_text() for p in (sweep.work_root / ".submitit").rglob("*_log.*"))
    for line in ("this job is preempted", "Calling checkpoint method", "DUE TO JOB REQUEUE"):
        assert line in submitit_log
