"""The command lines of mixbench, one module per tool.

Each module has a ``main(argv=None) -> int``. They are installed as console entry points
(``pyproject.toml``'s ``[project.scripts]``) and called by the scripts that researchers run
from a checkout::

    mixbench-train         tools/train.py         train a config
    mixbench-test          tools/test.py          evaluate a checkpoint
    mixbench-sweep         tools/sweep.py         plan / run / status of a benchmark sweep
    mixbench-leaderboard   tools/leaderboard.py   ingest result.json files, write reports
    mixbench-prepare-data  tools/prepare_data.py  check a dataset's layout, write its index

``mixbench.cli.sweep`` and ``mixbench.cli.leaderboard`` import no torch: they run where only
``pip install 'mixbench[sweep]'`` or ``'mixbench[leaderboard]'`` was installed.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence

# Top-level modules that `pip install 'mixbench[train]'` brings; a tool that needs one of them
# and finds it missing says which extra to install instead of a bare ModuleNotFoundError.
TRAIN_MODULES = frozenset(
    {"torch", "torchvision", "mmengine", "timm", "cv2", "numpy", "scipy", "numba", "sklearn", "maxflow"}
)

Main = Callable[[Sequence[str] | None], int]


def needs_training_stack(tool: str) -> Callable[[Main], Main]:
    """Decorate a ``main``: a missing training dependency becomes exit status 2 and a message
    that names the module and the install command (``mixbench[train]``)."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except ModuleNotFoundError as e:
                if (e.name or "").split(".")[0] not in TRAIN_MODULES:
                    raise
                print(
                    f"{tool}: the Python module {e.name!r} is not installed; this command "
                    "needs mixbench's training dependencies: pip install 'mixbench[train]' "
                    "(in a checkout: pip install -r requirements.txt)",
                    file=sys.stderr,
                )
                return 2

        return run

    return wrap
