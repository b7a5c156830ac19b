"""The ``result.json`` contract: every run writes one, the sweep and the leaderboard read it.

Standard library only (no torch, no mmengine), so readers run anywhere.

Schema version 2::

    {
      "schema": 2,
      "status": "running" | "finished" | "failed",
      "updated": "2026-11-22T03:00:00+00:00",
      "run": {"name", "method", "dataset", "backbone", "epochs", "seed",
              "config", "config_hash", "work_dir", "tags": {...},
              "method_settings": {"classifier", "mixer", "loss", "paramwise_cfg", "hooks"},
              "backbone_settings": {...}},
      "metrics": {"top1_best", "top1_best_epoch", "top1_last", "top1_median_last_n",
                  "top1_best_last_n", "n", "top5_best", "top5_last", "epochs_done",
                  "top1_best_head_median_last_n", "best_head"},   # the last two: see below
      "history": [{"epoch", "top1", "top5", "train_loss", "lr", "wall_s",
                   "heads": {"mix_q", "one_q", "mix_k", "one_k"}}],   # heads: see below
      "cost": {"wall_s", "train_img_per_s", "s_per_iter", "peak_mem_mb", "device",
               "num_devices", "iters"},
      "env": {"mixbench", "torch", "cuda", "git", "python", "hostname"},
      "error": {"type", "message", "kind"}    # only when status == "failed"
    }

``error.kind`` says how a failed run ended: ``diverged`` (the loss or a metric became NaN or
infinite), ``refused`` (a checkpoint that is not weights-only, see mixbench.checkpoint) --
both deterministic, so the sweep does not retry them --, ``interrupted`` (Ctrl-C) or
``crashed`` (any other exception). Every number in the file is finite (JSON has no NaN).


``run.method_settings`` is the run's settings fingerprint (:func:`mixbench.fingerprint.
method_settings`), ``run.backbone_settings`` the backbone as configured: with the dataset,
backbone, epochs and metric they decide whether a published number is comparable.

``top1``/``top5`` are percentages. The summaries (each a named metric, :data:`METRICS`):
``top1_median_last_n`` is the median top-1 over the last ``n`` evaluations (OpenMixup's
"median of the last 10 epochs"), ``top1_best_last_n`` the best of them (OpenMixup's ViT
tables); with fewer than ``n`` evaluations, all of them. ``top1`` is always the model's own
prediction (for AutoMix, SAMix and AdAutoMix: the online encoder's mixed head).

The learnable methods also evaluate the other heads OpenMixup evaluates: ``heads`` of a
history entry holds the top-1 of the online (``q``) and EMA (``k``) encoder with the mixed
(``mix``) and the one-hot (``one``) head. ``top1_best_head_median_last_n`` is OpenMixup's
reading of such runs (:func:`best_head_median`, its ``tools/summary/
find_automix_val_median.py``) and ``best_head`` says which head and evaluations gave it;
both sit beside ``top1_median_last_n``, never in its place, and are absent for runs without
heads.

Schema 1 files (no settings, no heads) are still read; a reader treats their settings as
unknown. Whoever changes this schema bumps ``SCHEMA_VERSION`` and updates every reader in
the same commit.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
#: the oldest schema this mixbench still reads
MIN_SCHEMA_VERSION = 1
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


#: The default N of the ``*_last_n`` metrics (OpenMixup's protocol: the last 10 epochs).
DEFAULT_LAST_N = 10
#: The heads of the learnable methods' evaluation, in the order OpenMixup's summary lists
#: them: EMA (``k``) and online (``q``) encoder, mixed and one-hot head.
HEADS = ("mix_k", "one_k", "mix_q", "one_q")


@dataclass(frozen=True)
class Metric:
    """A named way to read one number off a run's validation history."""

    key: str
    what: str  # the protocol's words; ``{n}`` is N
    uses_n: bool = True

    def label(self, n: int) -> str:
        """The name OpenMixup's tables and the reference CSV use (``median_last10``)."""
        return self.key.replace("_last_n", f"_last{n}") if self.uses_n else self.key

    def describe(self, n: int) -> str:
        return self.what.format(n=n)


#: Every per-run metric, by key (the leaderboard's ``--metric``).
METRICS = {
    m.key: m
    for m in (
        Metric("median_last_n", "median top-1 of the last {n} evaluations"),
        Metric("best_last_n", "best top-1 of the last {n} evaluations (OpenMixup's ViT tables)"),
        Metric("best", "best top-1 over all evaluations", uses_n=False),
        Metric("last", "top-1 of the final evaluation", uses_n=False),
        Metric(
            "best_head_median_last_n",
            "OpenMixup's reading of AutoMix-style runs: the best, over the four heads "
            "(online/EMA encoder x mixed/one-hot head) and two end windows of about the "
            "last {n} epochs, of the median top-1 (its tools/summary/"
            "find_automix_val_median.py)",
        ),
    )
}
TABLE_METRICS = tuple(METRICS)
#: Published metric names that are one of ours under another name: OpenMixup's
#: ``mean_best_3trials`` is the per-run best, averaged over the runs (trials) of a cell.
METRIC_ALIASES = {"mean_best_3trials": "best"}


def check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        import difflib

        close = difflib.get_close_matches(metric, METRICS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown metric {metric!r}{hint}; expected one of {', '.join(METRICS)}")
    return METRICS[metric]


def metric_label(metric: str, n: int) -> str:
    """``median_last_n`` with N = 10 -> ``median_last10``; ``best`` -> ``best``."""
    return check_metric(metric).label(n)


def parse_metric_label(label: str) -> tuple[str, int | None]:
    """The (metric key, N) a published label names: ``median_last10`` -> (``median_last_n``,
    10), ``best`` -> (``best``, None), ``mean_best_3trials`` -> (``best``, None). A label
    that names none of :data:`METRICS` is a ValueError."""
    label = METRIC_ALIASES.get(label, label)
    if label in METRICS and not METRICS[label].uses_n:
        return label, None
    m = re.fullmatch(r"(.+)_last(\d+)", label)
    if m and f"{m.group(1)}_last_n" in METRICS and int(m.group(2)) > 0:
        return f"{m.group(1)}_last_n", int(m.group(2))
    raise ValueError(
        f"metric label {label!r} names no mixbench metric; known: "
        + ", ".join(METRICS[k].label(10) for k in METRICS)
        + ", "
        + ", ".join(METRIC_ALIASES)
    )


def median_last_n(values: Iterable[float], n: int) -> float | None:
    """Median of the last ``n`` values (all of them if fewer); None for no values."""
    values = list(values)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not values:
        return None
    return float(statistics.median(values[-n:]))


def best_last_n(values: Iterable[float], n: int) -> float | None:
    """Best of the last ``n`` values (all of them if fewer); None for no values."""
    values = list(values)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return float(max(values[-n:])) if values else None


def _head_entries(history: list[dict]) -> list[dict]:
    return [h for h in history if h.get("heads") and h.get("epoch") is not None]


def best_head_window(history: list[dict], n: int) -> list[int]:
    """The epochs OpenMixup's AutoMix summary reads for ``record_num = n`` on a run whose last
    evaluation is epoch ``E``: those ``>= E - n - b`` with ``b = 1`` when ``n >= 10``, else
    0 (every epoch from ``E - 11`` to ``E`` for ``n = 10``: twelve evaluations)."""
    entries = _head_entries(history)
    if not entries:
        return []
    last = entries[-1]["epoch"]
    start = last - n - (1 if n >= 10 else 0)
    return [h["epoch"] for h in entries if h["epoch"] >= start]


def best_head_median(history: list[dict], n: int) -> dict | None:
    """OpenMixup's reading of an AutoMix-style run (``tools/summary/
    find_automix_val_median.py`` with ``record_num = n``), from the per-head top-1 of each
    evaluation (``history[i]["heads"]``)::

        R = the evaluations of best_head_window(history, n), oldest first; L = len(R)
        score(W) = max over heads h of median(top-1 of h over W)
        W* = R[:L-1] if score(R[:L-1]) >= score(R) else R     # its two end windows
        value = score(W*)

    (Its third candidate window, ``R[:L+1]``, is ``R`` again.) A head missing from an
    evaluation is left out of that head's median, as the script substitutes the online
    head's value only for a missing EMA head. Returns ``{"value", "head", "first_epoch",
    "last_epoch"}`` (``head``: which of :data:`HEADS` gave the value, the first in that order
    on a tie), or None without per-head evaluations."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    window = set(best_head_window(history, n))
    records = [h for h in _head_entries(history) if h["epoch"] in window]
    best = None
    for size in (len(records) - 1, len(records)):
        part = records[:size]
        if not part:
            continue
        for head in HEADS:
            values = [h["heads"][head] for h in part if h["heads"].get(head) is not None]
            if not values:
                continue
            value = float(statistics.median(values))
            if best is None or value > best["value"]:
                best = {
                    "value": value,
                    "head": head,
                    "first_epoch": part[0]["epoch"],
                    "last_epoch": part[-1]["epoch"],
                }
    return best


def metric_value(history: list[dict], metric: str, n: int) -> float | None:
    """One run's value of a metric (:data:`METRICS`) from its history (entries with
    ``epoch``, ``top1`` and, for the learnable methods, ``heads``); None when the history
    has no evaluation the metric reads."""
    check_metric(metric)
    if metric == "best_head_median_last_n":
        found = best_head_median(history, n)
        return None if found is None else found["value"]
    values = [h["top1"] for h in history if h.get("top1") is not None]
    if not values:
        return None
    if metric == "median_last_n":
        return median_last_n(values, n)
    if metric == "best_last_n":
        return best_last_n(values, n)
    return float(max(values)) if metric == "best" else float(values[-1])


def metric_shortfall(history: list[dict], metric: str, n: int, epochs: int) -> str | None:
    """Why this run's history cannot give the metric as a published table reads it, or None
    when it can. Published numbers read fixed epochs of a run of ``epochs`` epochs (the last
    N, the final one, OpenMixup's AutoMix windows), every one evaluated: a run that
    evaluated fewer of them (``val_interval`` > 1, a shorter run) or, for the head reading,
    recorded one head only, reads something else."""
    check_metric(metric)
    done = {h["epoch"] for h in history if h.get("top1") is not None}
    if metric == "best_head_median_last_n":
        if not _head_entries(history):
            return (
                "metric differs: the published number is the best of OpenMixup's four "
                "heads (online/EMA encoder x mixed/one-hot head); this run recorded its "
                "online head only"
            )
        need = set(range(epochs - n - (1 if n >= 10 else 0), epochs + 1))
        done = {h["epoch"] for h in _head_entries(history)}
    elif metric.endswith("_last_n"):
        need = set(range(epochs - n + 1, epochs + 1))
    elif metric == "last":
        need = {epochs}
    else:
        need = set(range(1, epochs + 1))
    need = {e for e in need if e >= 1}
    missing = sorted(need - done)
    if not missing:
        return None
    return (
        f"metric differs: {metric_label(metric, n)} reads epochs {min(need)}-{max(need)} "
        f"of {epochs}, each evaluated; this run has no evaluation of {len(missing)} of "
        f"them (first: epoch {missing[0]})"
    )


def summarize_history(history: list[dict], n: int = DEFAULT_LAST_N) -> dict:
    """The ``metrics`` section computed from a validation history."""
    top1 = [h["top1"] for h in history if h.get("top1") is not None]
    top5 = [h["top5"] for h in history if h.get("top5") is not None]
    out: dict[str, Any] = {"n": n, "epochs_done": history[-1]["epoch"] if history else 0}
    if top1:
        best_i = max(range(len(top1)), key=lambda i: top1[i])
        out.update(
            top1_best=top1[best_i],
            top1_best_epoch=[h for h in history if h.get("top1") is not None][best_i]["epoch"],
            top1_last=top1[-1],
            top1_median_last_n=median_last_n(top1, n),
            top1_best_last_n=best_last_n(top1, n),
        )
    else:
        out.update(
            top1_best=None,
            top1_best_epoch=None,
            top1_last=None,
            top1_median_last_n=None,
            top1_best_last_n=None,
        )
    out.update(top5_best=max(top5) if top5 else None, top5_last=top5[-1] if top5 else None)
    heads = best_head_median(history, n)
    if heads is not None:
        out["top1_best_head_median_last_n"] = heads["value"]
        out["best_head"] = {k: heads[k] for k in ("head", "first_epoch", "last_epoch")}
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
            f"({SCHEMA_VERSION}); upgrade mixbench to read it"
        )
    if schema < MIN_SCHEMA_VERSION:
        raise ResultFileError(f"{source}: invalid schema version {schema}")
    if data.get("status") not in STATUSES:
        raise ResultFileError(f"{source}: status must be one of {STATUSES}, got {data.get('status')!r}")
    for key in REQUIRED_SECTIONS:
        if key not in data:
            raise ResultFileError(f"{source}: missing section {key!r}")
    for key in ("run", "metrics", "cost", "env"):
        if not isinstance(data[key], dict):
            raise ResultFileError(
                f"{source}: section {key!r} must be an object, got {json.dumps(data[key])[:60]}"
            )
    missing = [k for k in REQUIRED_RUN_KEYS if k not in data["run"]]
    if missing:
        raise ResultFileError(f"{source}: run section lacks {', '.join(missing)}")
    if schema >= 2 and not isinstance(data["run"].get("method_settings"), dict):
        raise ResultFileError(
            f"{source}: run.method_settings must be an object (schema 2: the "
            "run's settings fingerprint); the file is damaged"
        )
    if not isinstance(data["history"], list):
        raise ResultFileError(f"{source}: history must be a list")
    for i, entry in enumerate(data["history"]):
        if not isinstance(entry, dict):
            raise ResultFileError(
                f"{source}: history entry {i} must be an object, got {json.dumps(entry)[:60]}"
            )
        for key in HISTORY_NUMBERS:
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ResultFileError(f"{source}: history[{i}].{key} must be a number or null, got {value!r}")
    bad = _non_finite(data)
    if bad:
        raise ResultFileError(
            f"{source}: {bad} is not a finite number (NaN or Infinity); "
            "mixbench never writes one, so the file was edited or corrupted"
        )
    return data


#: the numeric fields of a history entry (null where unknown)
HISTORY_NUMBERS = ("epoch", "top1", "top5", "train_loss", "lr", "wall_s")


def _non_finite(obj: Any, where: str = "") -> str | None:
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
        raise ResultFileError(
            f"{path}: not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}): "
            "corrupt; delete it (the run is redone) or restore it"
        ) from e
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
