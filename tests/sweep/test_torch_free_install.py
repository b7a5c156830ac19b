"""The laptop install: `pip install 'mixbench[sweep]'` into a fresh virtual environment (no
system site-packages, so no torch) runs a sweep with a stand-in trainer, ingests it and writes
the leaderboard through the installed console entry points; `mixbench-train` says what to
install instead of a traceback.

pip resolves against requirements.txt as constraints, so it takes the pinned releases (the ones
`make setup` installed, usually already in pip's cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from mbtest.repo import REPO
from mbtest.sweep import FAKE_TRAIN, fake_sweep

pytestmark = pytest.mark.slow


def _run(cmd, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc


def _ok(proc):
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_sweep_and_leaderboard_install_and_run_without_torch(tmp_path):
    src = tmp_path / "src"  # a clean copy: building in the checkout would leave build/ there
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "mixbench", src / "mixbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv], tmp_path))
    bin_ = venv / "bin"
    # --no-compile: writing .pyc files of scipy and matplotlib took most of the install's time
    _ok(
        _run(
            [
                bin_ / "python",
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-compile",
                f"{src}[sweep]",
                "-c",
                REPO / "requirements.txt",
            ],
            tmp_path,
        )
    )

    no_torch = _run([bin_ / "python", "-c", "import torch"], tmp_path)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    sweep = fake_sweep(tmp_path)
    db = tmp_path / "results.db"
    plan = _ok(_run([bin_ / "mixbench-sweep", "plan", sweep], tmp_path))
    assert plan.stdout.count("pending") >= 4, plan.stdout  # 2 methods x 2 seeds
    run = _ok(
        _run(
            [
                bin_ / "mixbench-sweep",
                "run",
                sweep,
                "--slots",
                "2",
                "--db",
                db,
                "--train-script",
                FAKE_TRAIN,
                "--poll-s",
                "0.05",
            ],
            tmp_path,
        )
    )
    assert "Leaderboard report" in run.stdout, run.stdout

    out = tmp_path / "report"
    report = _ok(_run([bin_ / "mixbench-leaderboard", "report", "--db", db, "--out", out], tmp_path))
    assert "html" in report.stdout
    md = (out / "leaderboard.md").read_text()
    # the stand-in trainer validates 10% then 20% top-1: the median of the last (up to) 10 is 15
    assert "| Mixup | **15.00 ± 0.00** | 2 |" in md and "| Vanilla | **15.00 ± 0.00** | 2 |" in md, md
    assert (out / "index.html").stat().st_size > 0
    show = _ok(_run([bin_ / "mixbench-leaderboard", "show", "--db", db], tmp_path))
    assert show.stdout.strip() == md.strip()

    train = _run([bin_ / "mixbench-train", sweep], tmp_path)
    assert train.returncode == 2, train.stderr
    assert "pip install 'mixbench[train]'" in train.stderr and "torch" in train.stderr
