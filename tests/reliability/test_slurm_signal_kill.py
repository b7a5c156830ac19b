"""Fault injection under the real single-node Slurm (tools/ci/start_slurm.sh): a trainer killed
by a signal inside its job is a crash (retried, then failed with its log tail), told apart
from a preemption by what Slurm says about the job, not by the sign of the return code."""

import pytest
from mbtest.sweep import FAKE_TRAIN, fake_sweep, run_sweep, state

from mixbench.sweep import SweepError, check_slurm, load_sweep, queued_jobs
from mixbench.sweep.slurm import load_jobs, stopped_by_slurm


def _require_slurm() -> None:
    try:
        check_slurm()
    except SweepError as e:
        pytest.fail(f"Slurm is not running: {e}")


@pytest.mark.parametrize("sig", ["SIGSEGV", "SIGKILL"])  # a segfault; the OOM killer's signal
def test_a_signal_killed_trainer_is_a_crash_not_a_preemption(tmp_path, sig):
    _require_slurm()
    path = fake_sweep(tmp_path, f"killed_{sig.lower()}", epochs=3, epoch_s=0.05, seeds=(0,), die_by=sig)
    sweep = load_sweep(path)
    proc = run_sweep(
        "run",
        path,
        "--backend",
        "slurm",
        "--no-ingest",
        "--poll-s",
        "0.5",
        "--retries",
        "1",
        "--train-script",
        FAKE_TRAIN,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for run in sweep.runs:
        st = state(run.work_dir)
        assert st["status"] == "failed", st
        # first launch + one retry, both crashes: not resubmitted as "interrupted" again and again
        assert st["launches"] == 2 and st["failures"] == 2
        assert [a["outcome"] for a in st["attempts"]] == ["failed", "failed"]
        assert st["failure_kind"] == "crashed"
        assert f"dying by {sig}" in st["log_tail"]
        assert f"killed by {sig}" in st["log_tail"] and "is RUNNING" in st["log_tail"]
        assert "a crash: counted as a failure" in st["log_tail"]
    assert not queued_jobs(load_jobs(sweep.work_root).values())


def test_what_slurm_says_decides_not_the_return_code():
    # a job id the controller does not know: scontrol fails, the signal is the fallback
    assert stopped_by_slurm("999999999", 0, -15)[0] is True
    stopped, why = stopped_by_slurm("999999999", 0, -11)
    assert stopped is False and "SIGSEGV" in why
