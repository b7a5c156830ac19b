"""The repository as a test sees it: its root, its method and model configs, its scripts
(imported by path) and its command-line tools (run as a user would)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def method_of(name: str, patch=None) -> dict:
    """The ``method:`` section of ``configs/methods/<name>.yaml``, with ``patch`` merged on
    top (e.g. ``{"classifier": {"mask_stage": 2}}``)."""
    from mixbench.config import load_config, merge

    return merge(load_config(REPO / "configs" / "methods" / f"{name}.yaml")["method"], patch or {})


def model_of(method: str, base: str = "resnet8_w16_gray", **model) -> dict:
    """The model config the Runner builds for ``configs/methods/<method>.yaml`` on the model
    base ``configs/_base_/models/<base>.yaml``, with ``model`` keys merged into the recipe."""
    from mixbench.config import load_config, merge
    from mixbench.method import resolve_method

    recipe = merge(load_config(REPO / "configs" / "_base_" / "models" / f"{base}.yaml")["model"], model)
    return resolve_method({"model": recipe, "method": method_of(method)})["model"]


def load_script(path):
    """Import a script of the repository (``tools/...``, ``bench/...``: not a package) by its
    path relative to the repo root, to call its functions in this process."""
    path = REPO / path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(*args, timeout=600, env=None, check=True, cwd=None):
    """Run ``python <tool> args...`` from the repo root; return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
            f"\n--- stderr\n{proc.stderr[-5000:]}"
        )
    return proc
