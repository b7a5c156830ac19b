"""The console entry points (pyproject.toml's [project.scripts]) and the tools/*.py scripts run
the same main(); the torch-free tools import no torch; a missing training dependency is
explained. The installed entry points themselves run in tests/sweep/test_torch_free_install.py."""

import importlib
import subprocess
import sys

import pytest
import tomllib
from mbtest.repo import REPO, load_script

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_tool_has_an_entry_point_and_the_script_runs_the_same_main():
    assert sorted(SCRIPTS) == [
        "mixbench-leaderboard",
        "mixbench-prepare-data",
        "mixbench-sweep",
        "mixbench-test",
        "mixbench-train",
    ]
    for name, target in SCRIPTS.items():
        module, func = target.split(":")
        tool = module.rsplit(".", 1)[1]
        assert name == "mixbench-" + tool.replace("_", "-")
        main = getattr(importlib.import_module(module), func)
        assert load_script(f"tools/{tool}.py").main is main


@pytest.mark.parametrize("target", sorted(SCRIPTS.values()))
def test_help_exits_zero(target, capsys):
    module, func = target.split(":")
    with pytest.raises(SystemExit) as e:
        getattr(importlib.import_module(module), func)(["--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_torch_free_tools_import_no_torch():
    code = (
        "import sys, mixbench.cli.sweep, mixbench.cli.leaderboard; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mmengine')); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_a_missing_training_dependency_names_the_extra(capsys):
    from mixbench.cli import needs_training_stack

    def missing(name):
        @needs_training_stack("mixbench-x")
        def main(argv=None):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        return main

    assert missing("torch.nn")([]) == 2
    err = capsys.readouterr().err
    assert "mixbench-x: the Python module 'torch.nn' is not installed" in err
    assert "pip install 'mixbench[train]'" in err
    with pytest.raises(ModuleNotFoundError):  # not a training dependency: a real bug, raised
        missing("mixbench.nowhere")([])


def test_sweep_launches_the_module_where_there_is_no_checkout(tmp_path, monkeypatch):
    from mixbench.sweep import launch

    class Run:
        work_dir = tmp_path / "run"

    monkeypatch.setattr(launch, "TRAIN_SCRIPT", tmp_path / "tools" / "train.py")  # absent
    args = [str(tmp_path / "run" / "config.yaml"), "--work-dir", str(tmp_path / "run"), "--resume", "auto"]
    assert launch.train_command(Run, python="py") == ["py", "-m", "mixbench.cli.train", *args]
    assert launch.train_command(Run, gpus=2, port=29501, python="py") == [
        "py",
        "-m",
        "torch.distributed.run",
        "--master_port=29501",
        "--nproc_per_node=2",
        "-m",
        "mixbench.cli.train",
        *args,
        "--launcher",
        "pytorch",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "mixbench.cli.train", "--help"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage:"), proc.stderr
