"""End to end with the real tools/train.py: 3 methods x 2 seeds on digits, 2 slots, killed
with kill -9 half-way and restarted; it finishes only the missing runs."""

import subprocess
from pathlib import Path

from mbtest.sweep import (
    env,
    pid_gone,
    real_digits_sweep,
    result_status,
    run_sweep,
    state,
    sweep_cmd,
    wait_for,
)

from mixbench.results import load_result
from mixbench.sweep import load_sweep

METHODS = {
    "Vanilla": {"type": "Vanilla"},
    "Mixup": {"type": "Mixup", "alpha": 1.0},
    "Mixup_a0.2": {"type": "Mixup", "alpha": 0.2},
}
EPOCHS = 2


def test_local_sweep_killed_half_way_finishes_only_the_missing_runs(tmp_path):
    path = real_digits_sweep(tmp_path, "e2e_local", METHODS, seeds=(0, 1), epochs=EPOCHS, train_samples=192)
    sweep = load_sweep(path)
    assert len(sweep.runs) == 6
    proc = subprocess.Popen(
        sweep_cmd("run", path, "--backend", "local", "--slots", "2", "--no-ingest"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )

    def half_way():
        done = [r for r in sweep.runs if result_status(r.work_dir) == "finished"]
        mid = [r for r in sweep.runs if r not in done and (r.work_dir / "last_checkpoint").exists()]
        return len(done) >= 1 and mid

    wait_for(half_way, 240, "one run finished and another mid-training", proc)
    proc.kill()  # kill -9 of the sweep process
    proc.wait()
    wait_for(
        lambda: all(
            not state(r.work_dir).get("pid") or pid_gone(state(r.work_dir)["pid"])
            for r in sweep.runs
            if (r.work_dir / "sweep_state.json").exists()
        ),
        60,
        "the trainers to die with the sweep",
    )
    done_before = {r.name for r in sweep.runs if result_status(r.work_dir) == "finished"}
    # run -> whether its checkpoint pointer survived the kill (mmengine deletes the old
    # checkpoint before writing the new one; the sweep repairs a dangling pointer)
    mid_at_kill = {
        r.name: Path((r.work_dir / "last_checkpoint").read_text().strip()).is_file()
        for r in sweep.runs
        if r.name not in done_before and (r.work_dir / "last_checkpoint").exists()
    }
    assert 1 <= len(done_before) < 6 and mid_at_kill

    rerun = run_sweep("run", path, "--backend", "local", "--slots", "2", "--no-ingest", timeout=400)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "6/6 done" in rerun.stdout
    for run in sweep.runs:
        st = state(run.work_dir)
        result = load_result(run.work_dir)
        assert result["status"] == "finished"
        assert [h["epoch"] for h in result["history"]] == list(range(1, EPOCHS + 1))
        assert result["run"]["method"] == run.axes["method"] and result["run"]["seed"] == run.axes["seed"]
        outcomes = [a["outcome"] for a in st["attempts"]]
        assert outcomes.count("done") == 1 and outcomes[-1] == "done", f"{run.name}: {outcomes}"
        assert st["failures"] == 0
        if run.name in done_before:
            assert st["launches"] == 1, f"{run.name} finished before the kill but was launched again"
        elif run.name in mid_at_kill:
            assert st["launches"] == 2 and st["attempts"][0]["outcome"] == "interrupted"
            relaunch_log = (run.work_dir / "train.log").read_text().split("launch 2 at")[1]
            if mid_at_kill[run.name]:
                assert "resumed epoch" in relaunch_log, f"{run.name} did not resume from its checkpoint"
            else:
                assert (
                    "last_checkpoint named the missing"
                    in (run.work_dir / "train.log").read_text().split("launch 1 at")[1]
                )
        else:
            assert st["launches"] in (1, 2)  # not started, or killed before its first checkpoint
