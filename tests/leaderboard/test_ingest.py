"""Ingest: idempotent, newer re-runs replace their row, bad files are reported and skipped."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mbtest.leaderboard import make_analysis, make_result
from sqlalchemy import func, select

from mixbench.leaderboard import build_leaderboard, ingest_paths, make_engine, normalize_db_url
from mixbench.leaderboard.db import epochs, runs
from mixbench.results import SCHEMA_VERSION, atomic_write_json

REPO = Path(__file__).resolve().parents[2]


def table_dump(url):
    engine = make_engine(url)
    with engine.connect() as conn:
        r = [tuple(row) for row in conn.execute(select(runs).order_by(runs.c.id))]
        e = [tuple(row) for row in conn.execute(select(epochs).order_by(epochs.c.id))]
    engine.dispose()
    return r, e


def test_same_files_twice_change_nothing(tmp_path):
    make_result(tmp_path, "Vanilla", 0, [50.0, 60.0])
    make_result(tmp_path, "Mixup", 0, [55.0, 65.0])
    url = str(tmp_path / "r.db")
    first = ingest_paths([tmp_path], db_url=url)
    assert len(first.inserted) == 2 and first.ok
    before = table_dump(url)
    second = ingest_paths([tmp_path, tmp_path / "cifar100_resnet18_cifar_mixup_e2_s0"], db_url=url)
    assert len(second.unchanged) == 2 and not second.inserted and not second.updated
    assert table_dump(url) == before  # not even ingested_at moved
    assert len(before[0]) == 2 and len(before[1]) == 4


def test_later_rerun_updates_its_row_and_history_older_is_ignored(tmp_path):
    url = str(tmp_path / "r.db")
    path = make_result(tmp_path, "CutMix", 0, [50.0, 60.0], status="running", minutes=0)
    ingest_paths([path], db_url=url)
    assert [r.name for r in build_leaderboard(url).in_progress] == [path.parent.name]
    old = json.loads(path.read_text())
    make_result(tmp_path, "CutMix", 0, [50.0, 60.0, 70.0], minutes=30, epochs=2)
    report = ingest_paths([path], db_url=url)
    assert report.updated == [str(path)]
    lb = build_leaderboard(url, metric="last")
    assert not lb.in_progress and [c.values for c in lb.cells] == [[70.0]]
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar() == 1
        assert conn.execute(select(epochs.c.top1).order_by(epochs.c.idx)).scalars().all() == [
            50.0,
            60.0,
            70.0,
        ]
    engine.dispose()
    atomic_write_json(path, old)  # the stale running file comes back: ignored
    assert ingest_paths([path], db_url=url).unchanged == [str(path)]
    assert build_leaderboard(url, metric="last").cells[0].values == [70.0]


def test_finish_written_in_the_same_second_still_updates(tmp_path):
    url = str(tmp_path / "r.db")
    path = make_result(tmp_path, "Mixup", 0, [50.0, 60.0], status="running")
    ingest_paths([path], db_url=url)
    make_result(tmp_path, "Mixup", 0, [50.0, 60.0], status="finished")  # same `updated`
    assert ingest_paths([path], db_url=url).updated == [str(path)]
    lb = build_leaderboard(url, metric="last")
    assert not lb.in_progress and [c.values for c in lb.cells] == [[60.0]]


def test_database_of_an_older_layout_is_refused_with_advice(tmp_path):
    import sqlite3

    con = sqlite3.connect(tmp_path / "old.db")
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="older layout .* ingest the work dirs again"):
        make_engine(str(tmp_path / "old.db"))


def test_bad_inputs_are_reported_and_skipped(tmp_path):
    good = make_result(tmp_path, "Vanilla", 0, [50.0])
    newer = make_result(tmp_path, "Mixup", 0, [51.0], name="newer_schema")
    data = json.loads(newer.read_text())
    data["schema"] = SCHEMA_VERSION + 1
    newer.write_text(json.dumps(data))
    truncated = make_result(tmp_path, "Mixup", 1, [52.0], name="truncated")
    truncated.write_text(truncated.read_text()[:200])
    badtype = make_result(tmp_path, "Mixup", 2, [53.0], name="bad_seed")
    data = json.loads(badtype.read_text())
    data["run"]["seed"] = "zero"
    badtype.write_text(json.dumps(data))
    running = make_result(tmp_path, "Mixup", 3, [54.0], name="running", status="running")
    url = str(tmp_path / "r.db")
    report = ingest_paths([tmp_path, tmp_path / "missing_dir"], db_url=url)
    rejected = dict(report.rejected)
    assert set(rejected) == {str(newer), str(truncated), str(badtype), str(tmp_path / "missing_dir")}
    assert "newer than this mixbench understands" in rejected[str(newer)]
    assert "truncated" in rejected[str(truncated)]
    assert "wrong type" in rejected[str(badtype)]
    assert sorted(report.inserted) == sorted([str(running), str(good)])
    assert report.not_counted == [(str(running), "running")]
    assert "REJECTED" in report.summary() and not report.ok
    lb = build_leaderboard(url)
    assert [c.method for c in lb.cells] == ["Vanilla"]  # nothing bad or unfinished counted
    assert [r.name for r in lb.in_progress] == ["running"]


def test_cli_ingest_exit_code_and_summary(tmp_path):
    make_result(tmp_path, "Vanilla", 0, [50.0])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text('{"schema": 1, "sta')
    url = str(tmp_path / "r.db")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "leaderboard.py"), "ingest", str(tmp_path), "--db", url],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert "ingested 1 new" in proc.stdout and "REJECTED" in proc.stdout
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar() == 1


def test_db_url_forms(tmp_path, monkeypatch):
    assert normalize_db_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("MIXBENCH_RESULTS_DB", str(tmp_path / "env.db"))
    assert normalize_db_url() == f"sqlite:///{tmp_path / 'env.db'}"
    assert normalize_db_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert normalize_db_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def test_leaderboard_imports_neither_torch_nor_mmengine(tmp_path):
    path = make_result(tmp_path, "Vanilla", 0, [50.0, 60.0])
    make_analysis(path, "calibration", {"ece": 3.25}, n_bins=15)  # ingested and shown too
    code = (
        "import sys\n"
        "from mixbench.leaderboard import ingest_paths, markdown_leaderboard\n"
        "import mixbench.leaderboard.report_html, mixbench.leaderboard.plots\n"
        f"assert ingest_paths([{str(tmp_path)!r}], db_url={str(tmp_path / 'r.db')!r}).ok\n"
        f"md = markdown_leaderboard({str(tmp_path / 'r.db')!r})\n"
        "assert 'Vanilla' in md and '| ECE (%) |' in md and '| 3.25 |' in md, md\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mmengine'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
