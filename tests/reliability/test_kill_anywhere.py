"""Fault injection: SIGKILL at random instants (seeded, a bounded number of times) of a real
training run and of a sweep; whatever the instant, what is on disk stays usable and the
next launch ends where the uninterrupted one does, redoing nothing that was recorded."""

import json
import random
import signal
import subprocess
import sys
import time

from mbtest.repo import REPO, run_tool
from mbtest.sweep import FAKE_TRAIN, env, fake_sweep, run_sweep, sweep_cmd

from mixbench.results import load_result
from mixbench.sweep import load_sweep
from mixbench.sweep.state import effective_status, read_state

DEMO = REPO / "configs/digits/resnet8_mixup.yaml"
EPOCHS = 3
ARGS = [
    "--deterministic",
    "--seed",
    "3",
    "--cfg-options",
    f"train_cfg.max_epochs={EPOCHS}",
    "train_dataloader.dataset.max_samples=128",
    "val_dataloader.dataset.max_samples=64",
    "model.backbone.width=8",
]
RUN_KILLS, SWEEP_KILLS = 2, 3  # each run launch costs a few seconds of start-up


def _usable(wd):
    """Invariants at any instant: result.json (if any) is a valid record; last_checkpoint
    (if any) names a complete checkpoint; no torn temp file survives a start."""
    if (wd / "result.json").exists():
        load_result(wd)  # raises on a torn or invalid file
    pointer = wd / "last_checkpoint"
    if pointer.exists():
        target = pointer.read_text().strip()
        assert target and (wd / target.rsplit("/", 1)[-1]).is_file(), f"last_checkpoint names {target!r}"


def _strip(history):
    return [{k: v for k, v in h.items() if k != "wall_s"} for h in history]


def test_run_killed_at_random_instants_resumes_to_the_uninterrupted_result(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    t0 = time.time()
    run_tool("tools/train.py", DEMO, "--work-dir", full, *ARGS)
    duration = time.time() - t0
    rng = random.Random(17)
    for _ in range(RUN_KILLS):
        # anywhere from start-up to the end of an uninterrupted run (it may even finish first)
        delay = rng.uniform(0.3, 1.0) * duration
        proc = subprocess.Popen(
            [sys.executable, "tools/train.py", str(DEMO), "--work-dir", str(part), "--resume", *ARGS],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _usable(part)
    run_tool("tools/train.py", DEMO, "--work-dir", part, "--resume", *ARGS)
    a, b = load_result(full), load_result(part)
    assert b["status"] == "finished"
    assert _strip(b["history"]) == _strip(a["history"]) and a["metrics"] == b["metrics"]
    assert sorted(p.name for p in part.glob("epoch_*.pth")) == [f"epoch_{EPOCHS}.pth"]  # max_keep_ckpts 1
    assert not list(part.glob(".*.tmp"))


def _corrupt_one(rng, runs):
    """A random run's result.json or sweep_state.json turned into bytes that are not UTF-8."""
    run = rng.choice(runs)
    target = run.work_dir / rng.choice(["result.json", "sweep_state.json"])
    if target.exists():
        target.write_bytes(b"\xff\xfe garbage \x00" + target.read_bytes()[:10])
    return target


def test_sweep_killed_at_random_instants_and_corrupt_files_lose_nothing(tmp_path):
    path = fake_sweep(tmp_path, "killed", epochs=5, epoch_s=0.15, seeds=(0, 1))
    sweep = load_sweep(path)
    rng = random.Random(5)
    corrupted = []
    for _ in range(SWEEP_KILLS):
        proc = subprocess.Popen(
            sweep_cmd(
                "run", path, "--slots", "2", "--no-ingest", "--poll-s", "0.05", "--train-script", FAKE_TRAIN
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env(),
        )
        try:
            proc.wait(timeout=rng.uniform(0.5, 2.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        time.sleep(0.3)  # the children die with the sweep (PR_SET_PDEATHSIG)
        corrupted.append(_corrupt_one(rng, sweep.runs))
        status = run_sweep("status", path)
        assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    final = run_sweep(
        "run", path, "--slots", "2", "--no-ingest", "--poll-s", "0.05", "--train-script", FAKE_TRAIN
    )
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    for run in sweep.runs:
        result = load_result(run.work_dir)
        assert result["status"] == "finished" and [h["epoch"] for h in result["history"]] == [1, 2, 3, 4, 5]
        # (a sweep_state.json corrupted after its run finished stays so: result.json decides)
        assert effective_status(run.work_dir) == "done"
        assert read_state(run.work_dir).get("failures", 0) == 0  # a kill is no failure
        starts = [
            json.loads(ln)["start_epoch"] for ln in (run.work_dir / "fake_launches").read_text().splitlines()
        ]
        # every launch resumed from the last checkpoint it found: epochs only go forward
        assert starts == sorted(starts)
    assert corrupted


def test_sweep_status_and_run_go_on_past_a_result_that_is_not_utf8(tmp_path):
    path = fake_sweep(tmp_path, "bytes", epochs=2, epoch_s=0.01, seeds=(0,))
    sweep = load_sweep(path)
    args = ("run", path, "--slots", "2", "--no-ingest", "--poll-s", "0.05", "--train-script", FAKE_TRAIN)
    assert run_sweep(*args).returncode == 0
    damaged, intact = sweep.runs
    (damaged.work_dir / "result.json").write_bytes(b'{"schema": 1, "status": "fin\xe9shed"}')
    status = run_sweep("status", path)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "1/2 done" in status.stdout, status.stdout
    again = run_sweep(*args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert load_result(damaged.work_dir)["status"] == "finished"  # redone (resumed), the other kept
    assert len((intact.work_dir / "fake_launches").read_text().splitlines()) == 1
