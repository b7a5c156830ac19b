"""The ``result.json`` contract: every run writes one, the sweep and the leaderboard read it.

Standard library only (no torch, no mmengine), so readers run anywhere.

Schema version 1::

    {
      "schema": 1,
      "status": "running" | "finished" | "failed",
      "updated": "2026-11-22T03:00:00+00:00",
      "run": {"name", "method", "dataset", "backbone", "epochs", "seed",
              "config", "config_hash", "work_dir", "tags": {...}},
      "metrics": {"top1_best", "top1_best_epoch", "top1_last", "top1_median_last_n", "n",
                  "top5_best", "top5_last", "epochs_done"},
      "history": [{"epoch", "top1", "top5", "train_loss", "lr", "wall_s"}],
      "cost": {"wall_s", "train_img_per_s", "s_per_iter", "peak_mem_mb", "device",
               "num_devices", "iters"},
      "env": {"mixbench", "torch", "cuda", "git", "python", "hostname"},
      "error": {"type", "message", "kind"}    # only when status == "failed"
    }

``error.kind`` says how a failed run ended: ``diverged`` (the loss or a metric became NaN or
infinite), ``refused`` (a checkpoint that is not weights-only, see mixbench.checkpoint) --
both deterministic, so the sweep does not retry them --, ``interrupted`` (Ctrl-C) or
``crashed`` (any other exception). Every number in the file is finite (JSON has no NaN).

``top1``/``top5`` are percentages. ``top1_median_last_n`` is the median top-1 over the last
``n`` validation evaluations (OpenMixup's "median of the last 10 epochs"); with fewer than
``n`` evaluations it is the median of all of them. Whoever changes this schema bumps
``SCHEMA_VERSION`` and updates every reader in the same commit.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
STATUSES = ("running", "finished", "failed")
FAILURE_DIVERGED, FAILURE_INTERRUPTED, FAILURE_CRASHED = "diverged", "interrupted", "crashed"
FAILURE_REFUSED = "refused"  # a checkpoint to resume from or load that is not weights-only
#: failure kinds that happen again when the same run is launched again: never retried
DETERMINISTIC_FAILURES = (FAILURE_DIVERGED, FAILURE_REFUSED)
REQUIRED_SECTIONS = ("run", "metrics", "history", "cost", "env")
REQUIRED_RUN_KEYS = ("name", "method", "dataset", "backbone", "epochs", "seed", "config_hash")


class ResultFileError(ValueError):
    """A result.json that cannot be used: unreadable, truncated, newer schema, malformed."""


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (setting it to read
    it back would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temp file in the same folder, fsync, rename.
    A reader sees the old file or the new one, never a torn one. The file gets the
    permissions of a plain ``open(path, "w")`` (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with every float that JSON cannot hold (NaN, +-inf) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: os.PathLike | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write_text`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


#: The per-run table metrics of the leaderboard (mixbench.leaderboard.aggregate) and the
#: default N of ``median_last_n`` (OpenMixup's protocol: the median of the last 10 epochs).
TABLE_METRICS = ("median_last_n", "best", "last")
DEFAULT_LAST_N = 10


def median_last_n(values: Iterable[float], n: int) -> Optional[float]:
    """Median of the last ``n`` values (all of them if fewer); None for no values."""
    values = list(values)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not values:
        return None
    return float(statistics.median(values[-n:]))


def summarize_history(history: list[dict], n: int = 10) -> dict:
    """The ``metrics`` section computed from a validation history."""
    top1 = [h["top1"] for h in history if h.get("top1") is not None]
    top5 = [h["top5"] for h in history if h.get("top5") is not None]
    out: dict[str, Any] = {"n": n, "epochs_done": history[-1]["epoch"] if history else 0}
    if top1:
        best_i = max(range(len(top1)), key=lambda i: top1[i])
        out.update(top1_best=top1[best_i],
                   top1_best_epoch=[h for h in history if h.get("top1") is not None][best_i]["epoch"],
                   top1_last=top1[-1], top1_median_last_n=median_last_n(top1, n))
    else:
        out.update(top1_best=None, top1_best_epoch=None, top1_last=None, top1_median_last_n=None)
    out.update(top5_best=max(top5) if top5 else None, top5_last=top5[-1] if top5 else None)
    return out


def validate_result(data: Any, source: str = "result.json") -> dict:
    """Check a loaded result against the schema; raise :class:`ResultFileError` if unusable."""
    if not isinstance(data, dict):
        raise ResultFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if not isinstance(schema, int):
        raise ResultFileError(f"{source}: missing integer 'schema' field")
    if schema > SCHEMA_VERSION:
        raise ResultFileError(
            f"{source}: schema {schema} is newer than this mixbench understands "
            f"({SCHEMA_VERSION}); upgrade mixbench to read it")
    if schema < 1:
        raise ResultFileError(f"{source}: invalid schema version {schema}")
    if data.get("status") not in STATUSES:
        raise ResultFileError(f"{source}: status must be one of {STATUSES}, got {data.get('status')!r}")
    for key in REQUIRED_SECTIONS:
        if key not in data:
            raise ResultFileError(f"{source}: missing section {key!r}")
    for key in ("run", "metrics", "cost", "env"):
        if not isinstance(data[key], dict):
            raise ResultFileError(f"{source}: section {key!r} must be an object, got "
                                  f"{json.dumps(data[key])[:60]}")
    missing = [k for k in REQUIRED_RUN_KEYS if k not in data["run"]]
    if missing:
        raise ResultFileError(f"{source}: run section lacks {', '.join(missing)}")
    if not isinstance(data["history"], list):
        raise ResultFileError(f"{source}: history must be a list")
    for i, entry in enumerate(data["history"]):
        if not isinstance(entry, dict):
            raise ResultFileError(f"{source}: history entry {i} must be an object, got "
                                  f"{json.dumps(entry)[:60]}")
        for key in HISTORY_NUMBERS:
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ResultFileError(f"{source}: history[{i}].{key} must be a number or null, "
                                      f"got {value!r}")
    bad = _non_finite(data)
    if bad:
        raise ResultFileError(f"{source}: {bad} is not a finite number (NaN or Infinity); "
                              "mixbench never writes one, so the file was edited or corrupted")
    return data


#: the numeric fields of a history entry (null where unknown)
HISTORY_NUMBERS = ("epoch", "top1", "top5", "train_loss", "lr", "wall_s")


def _non_finite(obj: Any, where: str = "") -> Optional[str]:
    """The path (``history[3].top1``) of the first NaN/inf float in ``obj``, else None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "value")
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for path, value in items:
        found = _non_finite(value, path)
        if found:
            return found
    return None


def load_result(path: os.PathLike | str) -> dict:
    """Read and validate one result.json (a file, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ResultFileError(f"{path}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise ResultFileError(f"{path}: not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}): "
                              "corrupt; delete it (the run is redone) or restore it") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultFileError(f"{path}: not valid JSON (truncated or corrupt?): {e}") from e
    return validate_result(data, str(path))


def find_result_files(*roots: os.PathLike | str) -> list[Path]:
    """Every result.json under the given directories (or the files themselves), sorted."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.add(root)
        elif root.is_dir():
            found.update(root.rglob(RESULT_FILE))
    return sorted(found)
