"""Loading checkpoints without running code.

A ``.pth`` file is a pickle: loaded in full (``torch.load(weights_only=False)``) it can run
any code its author put in it. mixbench loads every checkpoint *weights-only*: tensors,
containers, numbers, strings and the few types mmengine stores in its checkpoints
(``HistoryBuffer``, NumPy scalars and dtypes). Its own checkpoints load this way. A file
that needs anything else is refused, with how to allow it: list the file in the
environment variable ``MIXBENCH_TRUSTED_CHECKPOINTS`` (paths separated by ``:``) when you
made it or trust where it comes from. :func:`load_checkpoint` is used by the analysis tools
and, registered with mmengine's ``CheckpointLoader`` (:func:`use_for_mmengine`), by
``tools/train.py --resume`` / ``load_from`` and ``tools/test.py``; mmengine's own loader
would silently retry a refused file with ``weights_only=False``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

TRUST_ENV = "MIXBENCH_TRUSTED_CHECKPOINTS"


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that cannot be loaded weights-only (it could run code when loaded)."""


def trusted_checkpoints() -> set[Path]:
    """The files listed in ``$MIXBENCH_TRUSTED_CHECKPOINTS``, resolved."""
    return {Path(p).expanduser().resolve() for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p}


def _safe_globals() -> list:
    """The non-tensor types mmengine writes into checkpoints (its own allowlist)."""
    try:
        from mmengine.runner.checkpoint import get_torch_safe_globals
    except ImportError:
        return []
    return list(get_torch_safe_globals())


def load_checkpoint(source: Any, map_location: Any = "cpu", name: str | None = None) -> Any:
    """``torch.load`` weights-only (a path or a file object); a checkpoint that needs more
    is refused with :class:`UnsafeCheckpointError` unless its path is in
    ``$MIXBENCH_TRUSTED_CHECKPOINTS``."""
    name = name or str(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.resolve() in trusted_checkpoints():
            return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()
        why = next(
            (ln for ln in reason if "GLOBAL" in ln or "Unsupported" in ln), reason[0] if reason else ""
        )
        raise UnsafeCheckpointError(
            f"{name}: refused: this checkpoint holds more than weights ({why.strip()}); loading it "
            "in full could run code that its author put in it. mixbench's own checkpoints never "
            "need this. If you trust the file (you made it, or you trust its source), allow it "
            f"explicitly: {TRUST_ENV}={name} (several files separated by ':')"
        ) from None


def _mmengine_local(filename: str, map_location=None) -> Any:
    return load_checkpoint(filename, map_location)


def _mmengine_http(url: str, map_location=None) -> Any:
    from torch.hub import download_url_to_file, get_dir

    path = Path(get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        download_url_to_file(url, str(path))
    return load_checkpoint(path, map_location, name=f"{url} (downloaded to {path})")


def use_for_mmengine() -> None:
    """Make mmengine load local and http(s) checkpoints through :func:`load_checkpoint`."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=_mmengine_local, force=True)
    CheckpointLoader.register_scheme(prefixes=("http://", "https://"), loader=_mmengine_http, force=True)
