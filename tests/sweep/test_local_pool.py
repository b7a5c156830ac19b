"""The local pool's bookkeeping with a fake trainer (tests/sweep/fake_train.py, no torch):
slots, idempotence, retries, resume after kill -9 and Ctrl-C, adoption of a live run."""

import json
import os
import signal
import subprocess

import yaml
from mbtest.sweep import (
    FAKE_TRAIN,
    env,
    fake_sweep,
    pid_gone,
    result_status,
    run_sweep,
    state,
    sweep_cmd,
    wait_for,
)

from mixbench.sweep import LocalPool, load_sweep
from mixbench.sweep.report import console, plan_table, status_table
from mixbench.sweep.state import mark_launched, read_state


def _launches(run):
    path = run.work_dir / "fake_launches"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _pool(sweep, **kw):
    kw.setdefault("slots", 2)
    return LocalPool(sweep.runs, train_script=FAKE_TRAIN, echo=lambda m: None, poll_s=0.02, **kw)


def test_pool_runs_every_run_once_each_slot_with_its_own_threads_and_port(tmp_path):
    sweep = load_sweep(fake_sweep(tmp_path))
    done_cb = []
    out = _pool(sweep, on_done=lambda r: done_cb.append(r.name)).run()
    assert sorted(out["done"]) == sorted(r.name for r in sweep.runs) and len(out["done"]) == 4
    assert sorted(done_cb) == sorted(out["done"])
    ports = set()
    for run in sweep.runs:
        (launch,) = _launches(run)
        assert launch["omp"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
        assert launch["cuda"] == ""  # CPU slots see no GPU
        ports.add(launch["port"])
        st = state(run.work_dir)
        assert (st["status"], st["launches"], st["failures"]) == ("done", 1, 0)
        assert result_status(run.work_dir) == "finished"
    assert len(ports) == 2  # one rendezvous port per slot

    # idempotent: a second run launches nothing
    again = _pool(sweep).run()
    assert len(again["done"]) == 4
    assert all(len(_launches(r)) == 1 for r in sweep.runs)


def test_failing_run_is_retried_then_marked_failed_with_its_log_tail(tmp_path):
    flaky = load_sweep(fake_sweep(tmp_path, "flaky", seeds=(0,), fail_first=1))
    out = _pool(flaky, retries=1).run()
    assert len(out["done"]) == 2
    for run in flaky.runs:
        st = state(run.work_dir)
        assert (st["launches"], st["failures"]) == (2, 1)
        assert [a["outcome"] for a in st["attempts"]] == ["failed", "done"]

    broken = load_sweep(fake_sweep(tmp_path, "broken", seeds=(0,), fail_always=True))
    out = _pool(broken, retries=2).run()
    assert len(out["failed"]) == 2
    for run in broken.runs:
        st = state(run.work_dir)
        assert (st["status"], st["launches"], st["failures"]) == ("failed", 3, 3)
        assert "fake failure on launch 3" in st["log_tail"]
    # a failed run is not retried by a plain rerun ...
    assert len(_pool(broken, retries=2).run()["failed"]) == 2
    assert all(state(r.work_dir)["launches"] == 3 for r in broken.runs)
    # ... and the status table lists it with its log tail
    out = console()
    with out.capture() as cap:
        out.print(status_table(broken))
    text = cap.get()
    assert "failed 2" in text and "fake failure on launch 3" in text


def test_kill_9_of_the_sweep_then_restart_finishes_only_the_missing_runs(tmp_path):
    path = fake_sweep(tmp_path, "killed", epochs=6, epoch_s=0.3, seeds=(0, 1, 2))
    sweep = load_sweep(path)
    proc = subprocess.Popen(
        sweep_cmd(
            "run", path, "--slots", "2", "--no-ingest", "--train-script", FAKE_TRAIN, "--poll-s", "0.02"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )

    def progress():
        done = [r for r in sweep.runs if result_status(r.work_dir) == "finished"]
        mid = [r for r in sweep.runs if (r.work_dir / "fake_ckpt").exists() and r not in done]
        return len(done) >= 2 and mid

    wait_for(progress, 120, "two runs done and one mid-training", proc)
    children = [
        state(r.work_dir).get("pid")
        for r in sweep.runs
        if (r.work_dir / "sweep_state.json").exists() and state(r.work_dir)["status"] == "running"
    ]
    proc.kill()  # kill -9: no chance to clean up
    proc.wait()
    # the training processes die with the sweep (PR_SET_PDEATHSIG) ...
    wait_for(lambda: all(pid_gone(p) for p in children if p), 30, "the orphaned trainers to stop")
    done_before = {r.name for r in sweep.runs if result_status(r.work_dir) == "finished"}
    started_before = {r.name for r in sweep.runs if _launches(r)}
    ckpt_at_kill = {
        r.name: int((r.work_dir / "fake_ckpt").read_text())
        for r in sweep.runs
        if r.name in started_before - done_before and (r.work_dir / "fake_ckpt").exists()
    }
    assert ckpt_at_kill  # at least one run was killed mid-training
    assert 2 <= len(done_before) < len(sweep.runs)

    # ... and a new sweep finishes the rest, resuming the interrupted runs
    rerun = run_sweep(
        "run", path, "--slots", "2", "--no-ingest", "--train-script", FAKE_TRAIN, "--poll-s", "0.02"
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for run in sweep.runs:
        launches = _launches(run)
        st = state(run.work_dir)
        assert result_status(run.work_dir) == "finished"
        assert st["failures"] == 0, st
        if run.name in done_before:
            assert len(launches) == 1, f"{run.name} finished before the kill but ran again"
        elif run.name in started_before:
            assert len(launches) == 2
            assert st["attempts"][0]["outcome"] == "interrupted"
            assert launches[1]["start_epoch"] == ckpt_at_kill.get(run.name, 0)  # resumed, not redone
        else:
            assert len(launches) == 1


def test_ctrl_c_stops_the_runs_without_counting_a_failure(tmp_path):
    path = fake_sweep(tmp_path, "interrupted", epochs=50, epoch_s=0.2, seeds=(0,))
    sweep = load_sweep(path)
    proc = subprocess.Popen(
        sweep_cmd("run", path, "--slots", "2", "--no-ingest", "--train-script", FAKE_TRAIN),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    wait_for(
        lambda: all((r.work_dir / "fake_ckpt").exists() for r in sweep.runs), 60, "both runs training", proc
    )
    pids = [state(r.work_dir)["pid"] for r in sweep.runs]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "next `tools/sweep.py run` resumes them" in out
    assert all(pid_gone(p) for p in pids)
    for run in sweep.runs:
        st = state(run.work_dir)
        assert (st["status"], st["failures"], st["attempts"][-1]["outcome"]) == ("pending", 0, "interrupted")
    out = console()
    with out.capture() as cap:
        out.print(plan_table(sweep))
    assert "2 runs, 2 to do" in cap.get()


def test_a_run_left_running_by_a_dead_sweep_is_adopted_not_started_twice(tmp_path):
    sweep = load_sweep(fake_sweep(tmp_path, "adopt", epochs=4, epoch_s=0.2, seeds=(0,)))
    orphan_run = sweep.runs[0]
    pool = _pool(sweep)
    from mixbench.sweep.launch import prepare_run, train_command

    st = prepare_run(orphan_run)
    st = mark_launched(orphan_run.work_dir, st, "local", pid=None)
    orphan = subprocess.Popen(train_command(orphan_run, train_script=FAKE_TRAIN), env=env())
    st["pid"] = orphan.pid
    (orphan_run.work_dir / "sweep_state.json").write_text(json.dumps(st))
    out = pool.run()
    orphan.wait()
    assert len(out["done"]) == 2
    assert len(_launches(orphan_run)) == 1 and read_state(orphan_run.work_dir)["launches"] == 1
    assert len(_launches(sweep.runs[1])) == 1


def test_plan_estimates_cost_from_finished_runs_of_the_same_cell(tmp_path):
    path = fake_sweep(tmp_path, "plan", epochs=2, seeds=(0, 1))
    sweep = load_sweep(path)
    LocalPool(sweep.runs[:1], slots=1, train_script=FAKE_TRAIN, echo=lambda m: None, poll_s=0.02).run()
    out = run_sweep("plan", path)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if "dataset/backbone/" in line}
    assert "done" in lines["dataset/backbone/Vanilla_e2_s0"]
    assert "pending" in lines["dataset/backbone/Vanilla_e2_s1"]
    est = lines["dataset/backbone/Vanilla_e2_s1"].split("│")[3].strip()
    assert est.endswith("s") and est != "-"  # known from seed 0
    assert lines["dataset/backbone/Mixup_e2_s0"].split("│")[3].strip() == "-"  # another cell
    assert "4 runs, 3 to do" in out.stdout and "2 without an estimate" in out.stdout
    status = run_sweep("status", path)
    assert "1/4 done" in status.stdout and "pending 3" in status.stdout


def test_finished_runs_go_into_the_results_database_and_the_leaderboard_is_printed(tmp_path):
    path = fake_sweep(tmp_path, "ingested", seeds=(0, 1))
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "leaderboard": {"last_n": 1}}))  # the final table's N
    db = tmp_path / "results.db"
    out = run_sweep("run", path, "--slots", "2", "--train-script", FAKE_TRAIN, "--db", db, "--poll-s", "0.02")
    assert out.returncode == 0, out.stdout + out.stderr
    from mixbench.leaderboard import build_leaderboard

    board = build_leaderboard(str(db))
    (cells,) = board.tables.values()
    assert sorted((c.method, c.n) for c in cells) == [("Mixup", 2), ("Vanilla", 2)]
    assert "# mixbench leaderboard" in out.stdout and "| Mixup |" in out.stdout.replace("  ", " ")
    html = load_sweep(path).work_root / "leaderboard" / "index.html"
    assert html.is_file() and f"Leaderboard report: {html}" in out.stdout.replace("\n", "")
    assert "<table" in html.read_text()
    assert "median top-1 of the last 1 evaluations" in " ".join(out.stdout.split())
    assert "median top-1 of the last 1 evaluations" in html.read_text()


def test_a_run_that_finished_as_its_sweep_died_is_recorded_not_rerun(tmp_path):
    sweep = load_sweep(fake_sweep(tmp_path, "finished_late", seeds=(0,)))
    run = sweep.runs[0]
    from mixbench.sweep.launch import prepare_run, train_command

    st = mark_launched(run.work_dir, prepare_run(run), "local", pid=None)
    trainer = subprocess.run(train_command(run, train_script=FAKE_TRAIN), env=env())  # finishes ...
    assert trainer.returncode == 0
    st["pid"] = 999999999  # ... but the dead sweep never recorded it
    (run.work_dir / "sweep_state.json").write_text(json.dumps(st))
    ingested = []
    _pool(sweep, on_done=lambda r: ingested.append(r.name)).run()
    st = state(run.work_dir)
    assert (st["status"], st["launches"], st["attempts"][-1]["outcome"]) == ("done", 1, "done")
    assert len(_launches(run)) == 1 and run.name in ingested
