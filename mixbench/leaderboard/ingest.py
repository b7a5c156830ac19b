"""Ingest ``result.json`` files into the results database.

Idempotent: the same file twice changes nothing; a newer file of the same run (same
``name`` and ``config_hash``; later ``updated``, or as late and further along, see
``db.revision``) replaces its row and history; an older one is ignored. Unusable files
(newer schema, truncated, malformed) are reported and skipped; runs that are not
``finished`` are stored with their status (the report lists them as in progress or failed)
and are never aggregated.

Analyses: the JSON files the analysis tools write next to a run's result.json
(``<run dir>/analysis/<kind>.json``, e.g. ``calibration.json``, ``adversarial.json``) are
stored with the run, one row per (run, kind = the file name without ``.json``): the file's
``summary`` (headline numbers) and its other scalar fields (``n_bins``, ``num_samples``,
``seed``...). They are read at every ingest, also when the result.json itself is unchanged,
so an analysis written after the run was first ingested is picked up by the next ingest; a
file already stored (same content) or older than the stored one (its ``updated`` time, else
its mtime) changes nothing. A file that is not a JSON object with a ``summary`` object is
rejected with the reason; the run itself is still ingested.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from mixbench.analysis import ANALYSIS_DIR  # the package, without its torch submodules
from mixbench.results import ResultFileError, find_result_files, load_result

from .db import analysis, epochs, make_engine, revision, runs, upsert_statement


@dataclass
class IngestReport:
    """What one ingest did, file by file."""

    inserted: list[str] = field(default_factory=list)
    analyses: list[str] = field(default_factory=list)  # analysis files stored or updated
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, why with path)
    not_counted: list[tuple[str, str]] = field(default_factory=list)  # (path, status)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> str:
        lines = [
            f"ingested {len(self.inserted)} new, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.rejected)} rejected"
            + (f"; {len(self.analyses)} analysis files stored" if self.analyses else "")
        ]
        for path, status in self.not_counted:
            lines.append(f"  not counted ({status}): {path}")
        for _path, why in self.rejected:
            lines.append(f"  REJECTED {why}")
        return "\n".join(lines)


def _timestamp(data: dict, path: Path, error=ResultFileError) -> float:
    """Seconds since the epoch of the result's ``updated`` field (file mtime if absent)."""
    stamp = data.get("updated")
    if isinstance(stamp, str):
        try:
            dt = datetime.fromisoformat(stamp)
        except ValueError as e:
            raise error(f"{path}: 'updated' is not an ISO-8601 time: {stamp!r}") from e
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    return path.stat().st_mtime


def _number(section: dict, key: str, kind=float):
    value = section.get(key)
    return None if value is None else kind(value)


def _json_or_none(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def run_row(data: dict, path: Path) -> dict:
    """The ``runs`` row of a validated result (raises ResultFileError on bad field types)."""
    run, cost = data["run"], data["cost"]
    try:
        row = dict(
            name=str(run["name"]),
            config_hash=str(run["config_hash"]),
            method=str(run["method"]),
            dataset=str(run["dataset"]),
            backbone=str(run["backbone"]),
            epochs=int(run["epochs"]),
            seed=int(run["seed"]),
            status=data["status"],
            updated=data.get("updated"),
            updated_ts=_timestamp(data, path),
            content_sha256=hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
            source_path=str(path),
            work_dir=run.get("work_dir"),
            config_path=run.get("config"),
            tags_json=json.dumps(run.get("tags") or {}, sort_keys=True),
            method_settings_json=_json_or_none(run.get("method_settings")),
            backbone_settings_json=_json_or_none(run.get("backbone_settings")),
            metrics_json=json.dumps(data["metrics"], sort_keys=True),
            wall_s=_number(cost, "wall_s"),
            train_img_per_s=_number(cost, "train_img_per_s"),
            s_per_iter=_number(cost, "s_per_iter"),
            peak_mem_mb=_number(cost, "peak_mem_mb"),
            device=cost.get("device"),
            num_devices=_number(cost, "num_devices", int),
            iters=_number(cost, "iters", int),
            env_json=json.dumps(data["env"], sort_keys=True),
            error_message=(data.get("error") or {}).get("message"),
            ingested_at=time.time(),
        )
    except (TypeError, ValueError) as e:
        raise ResultFileError(f"{path}: a run or cost field has the wrong type: {e}") from e
    row["revision"] = revision(row["updated_ts"], row["status"], len(data["history"]))
    return row


def epoch_rows(data: dict, run_id: int, path: Path) -> list[dict]:
    """The ``epochs`` rows of a validated result's history."""
    rows = []
    for i, h in enumerate(data["history"]):
        if not isinstance(h, dict):
            raise ResultFileError(f"{path}: history entry {i} is not an object")
        try:
            heads = h.get("heads")
            if heads is not None and not isinstance(heads, dict):
                raise TypeError(f"'heads' must be an object, got {heads!r}")
            rows.append(
                dict(
                    run_id=run_id,
                    idx=i,
                    epoch=_number(h, "epoch", int),
                    heads_json=(
                        json.dumps({k: float(v) for k, v in heads.items()}, sort_keys=True) if heads else None
                    ),
                    **{k: _number(h, k) for k in ("top1", "top5", "train_loss", "lr", "wall_s")},
                )
            )
        except (TypeError, ValueError) as e:
            raise ResultFileError(f"{path}: history entry {i} has a non-numeric field: {e}") from e
    return rows


class AnalysisFileError(ValueError):
    """An analysis JSON that cannot be stored (the message says which file and why)."""


def read_analyses(result_path: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """The ``analysis`` rows (without ``run_id``) of the files in ``<result.json's
    folder>/analysis/*.json``, and (path, why) for each file that cannot be stored."""
    rows, bad = [], []
    for path in sorted((result_path.parent / ANALYSIS_DIR).glob("*.json")):
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
                raise AnalysisFileError(
                    f"{path}: not an analysis file: expected a JSON object with a 'summary' "
                    "object (as tools/analysis/*.py write); delete or rewrite it"
                )
            summary = {
                k: v
                for k, v in data["summary"].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            infinite = [k for k, v in summary.items() if not math.isfinite(v)]
            if infinite:
                raise AnalysisFileError(
                    f"{path}: summary value {infinite[0]} is not a finite number "
                    "(NaN or Infinity); rerun the analysis"
                )
            settings = {
                k: v
                for k, v in data.items()
                if k not in ("analysis", "updated", "summary", "json")
                and isinstance(v, (int, float, str, bool))
            }
            rows.append(
                dict(
                    kind=path.stem,  # the file name: a renamed copy never shadows the original
                    summary_json=json.dumps(summary, sort_keys=True),
                    settings_json=json.dumps(settings, sort_keys=True),
                    updated_ts=_timestamp(data, path, AnalysisFileError),
                    content_sha256=hashlib.sha256(text.encode()).hexdigest(),
                    source_path=str(path),
                    ingested_at=time.time(),
                )
            )
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AnalysisFileError) as e:
            bad.append(
                (
                    str(path),
                    str(e) if isinstance(e, AnalysisFileError) else f"{path}: unreadable analysis file: {e}",
                )
            )
    return rows, bad


def store_analyses(conn, run_id: int, rows: list[dict]) -> list[str]:
    """Upsert a run's analysis rows; returns the source paths actually written (a row
    with the same content, or as new or newer, stays)."""
    stored = {
        r.kind: r
        for r in conn.execute(
            select(analysis.c.kind, analysis.c.content_sha256, analysis.c.updated_ts).where(
                analysis.c.run_id == run_id
            )
        )
    }
    written = []
    for row in rows:
        have = stored.get(row["kind"])
        if have is not None and (
            have.content_sha256 == row["content_sha256"] or have.updated_ts >= row["updated_ts"]
        ):
            continue
        if conn.execute(
            upsert_statement(conn, analysis, dict(row, run_id=run_id), ["run_id", "kind"], "updated_ts")
        ).scalar():
            written.append(row["source_path"])
    return written


def ingest_result(
    engine: Engine, data: dict, path: Path, analyses: Iterable[dict] = ()
) -> tuple[str, list[str]]:
    """Write one validated result and its analysis rows (:func:`read_analyses`) in one
    transaction; returns (inserted/updated/unchanged, analysis files written)."""
    row = run_row(data, path)
    analyses = list(analyses)
    key = (runs.c.name == row["name"], runs.c.config_hash == row["config_hash"])
    with engine.begin() as conn:
        existing = conn.execute(select(runs.c.id, runs.c.content_sha256, runs.c.revision).where(*key)).first()
        new_id = None
        if existing is None or (
            existing.content_sha256 != row["content_sha256"] and existing.revision < row["revision"]
        ):
            new_id = conn.execute(
                upsert_statement(conn, runs, row, ["name", "config_hash"], "revision")
            ).scalar()  # None: a concurrent writer stored this run, as new or newer
        if new_id is not None:
            conn.execute(delete(epochs).where(epochs.c.run_id == new_id))
            hist = epoch_rows(data, new_id, path)
            if hist:
                conn.execute(insert(epochs), hist)
        outcome = "unchanged" if new_id is None else "inserted" if existing is None else "updated"
        written = []
        if analyses:
            run_id = new_id or conn.execute(select(runs.c.id).where(*key)).scalar_one()
            written = store_analyses(conn, run_id, analyses)
    return outcome, written


def ingest_paths(
    paths: Iterable[str | os.PathLike], db_url: str | None = None, engine: Engine | None = None
) -> IngestReport:
    """Ingest every result.json under ``paths`` (folders or files) into the database, with
    the analysis files next to each (see the module docstring).

    ``db_url``: a SQLAlchemy URL or a SQLite file path (default ``$MIXBENCH_RESULTS_DB`` or
    ``work_dirs/results.db``). Returns an :class:`IngestReport`; bad files are listed in
    ``report.rejected`` with the reason, never stored.
    """
    own = engine is None
    engine = engine or make_engine(db_url)
    report = IngestReport()
    paths = list(paths)
    missing = [str(p) for p in paths if not Path(p).exists()]
    report.rejected.extend((p, f"{p}: no such file or folder") for p in missing)
    try:
        for path in find_result_files(*[p for p in paths if Path(p).exists()]):
            try:
                data = load_result(path)
                analyses, bad = read_analyses(path)
                outcome, written = ingest_result(engine, data, path, analyses)
            except ResultFileError as e:
                report.rejected.append((str(path), str(e)))
                continue
            except (AttributeError, KeyError, TypeError, ValueError) as e:
                # a shape validate_result does not foresee: this file is bad, the rest goes in
                report.rejected.append((str(path), f"{path}: malformed result ({type(e).__name__}: {e})"))
                continue
            getattr(report, outcome).append(str(path))
            report.analyses.extend(written)
            report.rejected.extend(bad)
            if data["status"] != "finished":
                report.not_counted.append((str(path), data["status"]))
    finally:
        if own:
            engine.dispose()
    return report
