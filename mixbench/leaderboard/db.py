"""The results database: one row per run, one row per validation of a run, one row per
analysis of a run (``<work_dir>/analysis/<kind>.json``, written by tools/analysis/).

SQLite by default (``work_dirs/results.db``), PostgreSQL through a database URL, both
through SQLAlchemy Core. Every write is one transaction per run:

- SQLite: the transaction starts with ``BEGIN IMMEDIATE`` (the write lock is taken at once,
  so two writers never deadlock upgrading a read lock) and waits up to ``busy_timeout``
  seconds for another writer; the rollback journal is kept (no WAL), which is what works on
  the most file systems. SQLite must still not be written from many nodes over a network
  file system: there, the runs' result.json files are the record and one process ingests them.
- PostgreSQL: an upsert (``INSERT ... ON CONFLICT DO UPDATE``) locks the run's row, so
  concurrent writers of the same run serialize on it and writers of different runs do not
  wait for each other.

A run is identified by ``(name, config_hash)``: the same experiment ingested again is the
same row. A newer file replaces the row and its history; an older one or the same file again
changes nothing. "Newer" compares :func:`revision`: the ``updated`` time, then the status
(a finished or failed file beats a running one written in the same second), then the length
of the history.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy import Float as SQLFloat
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.types import TypeDecorator

DEFAULT_DB_PATH = Path("work_dirs") / "results.db"
DB_ENV_VAR = "MIXBENCH_RESULTS_DB"
SQLITE_BUSY_TIMEOUT_S = 120.0


class Float(TypeDecorator):
    """A float column that holds finite numbers only: NaN and +-inf are stored as NULL and
    read back as None (also from a row written by hand or by an older mixbench), so no row
    can put a NaN into an aggregate, a plot or a report."""

    impl = SQLFloat
    cache_ok = True

    @staticmethod
    def _finite(value):
        if value is None:
            return None
        value = float(value)
        return value if math.isfinite(value) else None

    def process_bind_param(self, value, dialect):
        return self._finite(value)

    def process_result_value(self, value, dialect):
        return self._finite(value)


metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("config_hash", String(128), nullable=False),
    Column("method", String(128), nullable=False, index=True),
    Column("dataset", String(128), nullable=False, index=True),
    Column("backbone", String(128), nullable=False),
    Column("epochs", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated", String(64)),
    Column("updated_ts", Float, nullable=False),
    Column("revision", String(32), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("source_path", Text),
    Column("work_dir", Text),
    Column("config_path", Text),
    Column("tags_json", Text),
    Column("method_settings_json", Text),  # run.method_settings (None: schema 1 file)
    Column("backbone_settings_json", Text),  # run.backbone_settings
    Column("metrics_json", Text),
    Column("wall_s", Float),
    Column("train_img_per_s", Float),
    Column("s_per_iter", Float),
    Column("peak_mem_mb", Float),
    Column("device", String(255)),
    Column("num_devices", Integer),
    Column("iters", Integer),
    Column("env_json", Text),
    Column("error_message", Text),
    Column("ingested_at", Float, nullable=False),
    UniqueConstraint("name", "config_hash", name="uq_runs_name_config_hash"),
)

epochs = Table(
    "epochs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("epoch", Integer),
    Column("top1", Float),
    Column("top5", Float),
    Column("train_loss", Float),
    Column("lr", Float),
    Column("wall_s", Float),
    Column("heads_json", Text),  # {head: top-1} of the learnable methods' extra heads
    UniqueConstraint("run_id", "idx", name="uq_epochs_run_idx"),
)

analysis = Table(
    "analysis",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(64), nullable=False),  # calibration, adversarial, ...
    Column("summary_json", Text, nullable=False),  # the file's "summary": headline numbers
    Column("settings_json", Text),  # its other scalar fields (n_bins, seed, ...)
    Column("updated_ts", Float, nullable=False),  # the file's "updated" (else its mtime)
    Column("content_sha256", String(64), nullable=False),
    Column("source_path", Text),
    Column("ingested_at", Float, nullable=False),
    UniqueConstraint("run_id", "kind", name="uq_analysis_run_kind"),
)


_STATUS_RANK = {"running": 0, "failed": 1, "finished": 1}


#: The runs columns a leaderboard or curves query may filter on.
FILTER_KEYS = ("dataset", "backbone", "epochs", "method", "seed", "name", "config_hash")


def where_runs(query, filters: dict):
    """``query`` restricted to the runs whose columns equal ``filters`` ({column: value},
    ``epochs`` and ``seed`` compared as integers, the others as strings); a key outside
    :data:`FILTER_KEYS` is a ValueError that lists them."""
    bad = sorted(set(filters) - set(FILTER_KEYS))
    if bad:
        raise ValueError(
            f"cannot filter on {', '.join(bad)}; filter keys are "
            f"{', '.join(FILTER_KEYS)} (e.g. --filter dataset=cifar100)"
        )
    for key, value in filters.items():
        query = query.where(runs.c[key] == (int(value) if key in ("epochs", "seed") else str(value)))
    return query


def revision(updated_ts: float, status: str, history_len: int) -> str:
    """A fixed-width digit string that orders versions of one run's result.json: updated
    time (ms), status rank, history length. Digits only, so every collation sorts it alike."""
    return f"{round(updated_ts * 1000):015d}{_STATUS_RANK.get(status, 0)}{history_len:06d}"


def default_db_url() -> str:
    """``$MIXBENCH_RESULTS_DB`` if set, else SQLite at ``work_dirs/results.db``."""
    return os.environ.get(DB_ENV_VAR) or str(DEFAULT_DB_PATH)


def normalize_db_url(db: str | os.PathLike | None = None) -> str:
    """A SQLAlchemy URL from a URL or a file path (a path means SQLite).

    ``postgresql://`` URLs are given the psycopg (v3) driver (``psycopg[binary]``, in
    requirements.txt) when it is installed; SQLAlchemy's own default would be psycopg2.
    """
    db = str(db) if db is not None else default_db_url()
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().resolve()}"
    url = make_url(db)
    if url.drivername == "postgresql":
        try:
            import psycopg  # noqa: F401

            url = url.set(drivername="postgresql+psycopg")
        except ImportError:
            pass
    return url.render_as_string(hide_password=False)


def _sqlite_serialized_writes(engine: Engine) -> None:
    """Make pysqlite leave transactions to us and start each one with BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(db: str | os.PathLike | None = None) -> Engine:
    """An engine for ``db`` (URL or SQLite path) with the tables created if missing."""
    url = normalize_db_url(db)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _sqlite_serialized_writes(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    create_tables(engine)
    return engine


# Any constant works: it names the lock that serializes CREATE TABLE across processes.
_PG_SCHEMA_LOCK = 0x6D697862


def create_tables(engine: Engine) -> None:
    """Create the tables if missing; safe when many processes start at once."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
        metadata.create_all(conn, checkfirst=True)
        insp = inspect(conn)
        for table in metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            missing = sorted({c.name for c in table.columns} - have)
            if missing:
                raise RuntimeError(
                    f"the results database {engine.url.render_as_string()} has an older "
                    f"layout (table {table.name} lacks {', '.join(missing)}); the result.json "
                    "files are the record: delete the database (or use a new --db) and "
                    "ingest the work dirs again"
                )


def upsert_statement(conn, table: Table, values: dict, key: list[str], newer_col: str):
    """``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE stored.newer_col < new.newer_col``
    returning the row id (no row when the stored row is as new or newer)."""
    stmt: Any  # each dialect's Insert has its own on_conflict_do_update
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        stmt = postgresql_insert(table)
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    else:
        raise RuntimeError(
            f"results database dialect {conn.dialect.name!r} is not supported; "
            "use a SQLite path or a postgresql:// URL"
        )
    stmt = stmt.values(**values)
    update = {c: stmt.excluded[c] for c in values if c not in key}
    return stmt.on_conflict_do_update(
        index_elements=key,
        set_=update,
        where=table.c[newer_col] < stmt.excluded[newer_col],
    ).returning(table.c.id)
