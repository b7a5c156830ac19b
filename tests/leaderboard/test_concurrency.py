"""Many writers at once, on SQLite and on a real PostgreSQL server: no row lost or doubled.

The PostgreSQL tests need the server that tools/ci/install_postgres.sh starts; without it
they fail with that instruction (they never skip).
"""

import subprocess
import sys
from pathlib import Path

from mbtest.leaderboard import history_for, make_result, write_reference_runs
from sqlalchemy import func, select

from mixbench.leaderboard import build_leaderboard, ingest_paths, make_engine
from mixbench.leaderboard.db import epochs, runs
from mixbench.leaderboard.report_md import markdown_report

REPO = Path(__file__).resolve().parents[2]
WRITERS = 4
OWN_RUNS = 2
SHARED_RUNS = 3


def write_contended_runs(root: Path) -> list[Path]:
    """One folder per writer (its own runs) plus a shared folder every writer ingests."""
    for seed in range(SHARED_RUNS):
        make_result(root / "shared", "Vanilla", seed, history_for(70.0 + seed))
    for w in range(WRITERS):
        for seed in range(OWN_RUNS):
            make_result(root / f"writer{w}", f"Method{w}", seed, history_for(60.0 + seed))
    return [root / "shared"] + [root / f"writer{w}" for w in range(WRITERS)]


def run_writers_at_once(folders: list[Path], db: str) -> None:
    """Start one `tools/leaderboard.py ingest` process per writer, all at the same time;
    writer w ingests its own folder and the shared one (half of them shared first)."""
    shared, own = folders[0], folders[1:]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tools" / "leaderboard.py"),
                "ingest",
                *([str(shared), str(f)] if w % 2 else [str(f), str(shared)]),
                "--db",
                db,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w, f in enumerate(own)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"writer failed:\n{out}\n{err}"


def assert_every_row_once(db: str) -> None:
    engine = make_engine(db)
    with engine.connect() as conn:
        n_runs = conn.execute(select(func.count()).select_from(runs)).scalar()
        n_epochs = conn.execute(select(func.count()).select_from(epochs)).scalar()
        names = conn.execute(select(runs.c.name)).scalars().all()
    engine.dispose()
    expected = SHARED_RUNS + WRITERS * OWN_RUNS
    assert n_runs == expected and len(set(names)) == expected
    assert n_epochs == expected * len(history_for(0.0))
    lb = build_leaderboard(db)
    assert sorted((c.method, c.n) for c in lb.cells) == sorted(
        [("Vanilla", SHARED_RUNS)] + [(f"Method{w}", OWN_RUNS) for w in range(WRITERS)]
    )


def test_concurrent_writers_sqlite(tmp_path):
    db = str(tmp_path / "results.db")
    run_writers_at_once(write_contended_runs(tmp_path / "runs"), db)
    assert_every_row_once(db)


def test_concurrent_writers_postgresql(tmp_path, pg_url):
    run_writers_at_once(write_contended_runs(tmp_path / "runs"), pg_url)
    assert_every_row_once(pg_url)


def test_postgresql_gives_the_same_leaderboard_as_sqlite(tmp_path, pg_url):
    write_reference_runs(tmp_path / "runs")
    sqlite = str(tmp_path / "results.db")
    for db in (sqlite, pg_url):
        report = ingest_paths([tmp_path / "runs"], db_url=db)
        assert report.ok and len(report.inserted) == 18, report.summary()
        assert len(ingest_paths([tmp_path / "runs"], db_url=db).unchanged) == 18
    assert markdown_report(build_leaderboard(pg_url)) == markdown_report(build_leaderboard(sqlite))
