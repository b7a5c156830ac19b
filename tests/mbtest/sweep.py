"""The sweep tests' support: writing sweep files, running tools/sweep.py, reading state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mbtest.repo import REPO

FAKE_TRAIN = REPO / "tests" / "sweep" / "fake_train.py"  # a script (run, never imported)
SWEEP_TOOL = REPO / "tools" / "sweep.py"
CONFIGS = REPO / "configs"


def write_sweep(tmp_path: Path, spec: dict, name: str = "sweep.yaml") -> Path:
    spec = {"work_root": str(tmp_path / "work_dirs"), **spec}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fake_sweep(
    tmp_path: Path, name: str = "fake", epochs: int = 2, epoch_s: float = 0.05, seeds=(0, 1), **fake
) -> Path:
    """Two methods x ``seeds`` run by tests/sweep/fake_train.py."""
    return write_sweep(
        tmp_path,
        {
            "name": name,
            "base": {"train_cfg": {"max_epochs": epochs}},
            "axes": {
                "method": {"Vanilla": {"type": "Vanilla"}, "Mixup": {"type": "Mixup", "alpha": 1.0}},
                "seed": list(seeds),
            },
            "options": {"fake": {"epoch_s": epoch_s, **fake}},
        },
        f"{name}.yaml",
    )


def real_digits_sweep(
    tmp_path: Path,
    name: str,
    methods: dict,
    seeds,
    epochs: int,
    train_samples: int,
    resources: dict | None = None,
) -> Path:
    """A tiny real sweep: digits, ResNet-8 at width 8, ``train_samples`` training images."""
    return write_sweep(
        tmp_path,
        {
            "name": name,
            "base": [
                str(CONFIGS / "_base_/schedules/sgd_cosine_short.yaml"),
                str(CONFIGS / "_base_/runtime.yaml"),
            ],
            "axes": {
                "dataset": {"digits": str(CONFIGS / "_base_/datasets/digits.yaml")},
                "backbone": {
                    "resnet8_w8": {
                        "_base_": str(CONFIGS / "_base_/models/resnet8_w16_gray.yaml"),
                        "model": {"backbone": {"width": 8}},
                    }
                },
                "method": methods,
                "max_epochs": [epochs],
                "seed": list(seeds),
            },
            "options": {
                "train_dataloader.dataset.max_samples": train_samples,
                "val_dataloader.dataset.max_samples": 128,
                "default_hooks.logger.interval": 5,
            },
            "resources": resources or {"gpus": 0, "cpus": 1, "mem_gb": 2, "time_min": 10},
        },
        f"{name}.yaml",
    )


def sweep_cmd(*args) -> list:
    return [sys.executable, str(SWEEP_TOOL), *map(str, args)]


def env() -> dict:
    e = dict(os.environ)
    e.setdefault("HF_HUB_OFFLINE", "1")
    return e


def run_sweep(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env())


def state(work_dir: Path) -> dict:
    return json.loads((Path(work_dir) / "sweep_state.json").read_text())


def result_status(work_dir: Path):
    try:
        return json.loads((Path(work_dir) / "result.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def wait_for(predicate, timeout: float, what: str, proc=None, poll: float = 0.1):
    """Poll ``predicate`` until true; fail naming ``what`` (and the process output) on timeout."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited (rc {proc.returncode}) before {what}:\n{out}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
