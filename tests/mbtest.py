"""Helpers for tests: run the command-line tools as a user would."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                             f"\n--- stderr\n{proc.stderr[-5000:]}")
    return proc
