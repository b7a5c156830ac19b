"""One bad file must not stop everything (issue 17): each bad result.json is reported with its
path and reason and skipped, the rest is ingested, and no database row can break a report."""

import json
import math
import re
from pathlib import Path

import pytest
from mbtest.leaderboard import make_analysis, make_result
from mbtest.repo import run_tool
from sqlalchemy import text

from mixbench.leaderboard import build_leaderboard, ingest_paths, make_engine
from mixbench.results import ResultFileError, load_result


def corrupt_runs(root: Path) -> dict:
    """Four bad result.json files (and why each is bad), next to good ones."""
    bad = {}
    p = make_result(root, "Bytes", 0, [50.0])
    p.write_bytes(p.read_bytes().replace(b'"Bytes"', b'"B\xff\xfetes"'))  # not UTF-8
    bad[p] = "not UTF-8"
    for method, edit, why in (
        ("NoCost", lambda d: d.update(cost=None), "section 'cost' must be an object"),
        ("ListMetrics", lambda d: d.update(metrics=[]), "section 'metrics' must be an object"),
    ):
        p = make_result(root, method, 0, [50.0])
        data = json.loads(p.read_text())
        edit(data)
        p.write_text(json.dumps(data))
        bad[p] = why
    p = make_result(root, "Inf", 0, [50.0, 60.0])
    p.write_text(p.read_text().replace('"top1": 60.0', '"top1": Infinity'))
    bad[p] = "history[1].top1 is not a finite number"
    return bad


def test_bad_results_are_reported_and_skipped_the_rest_ingested(tmp_path):
    runs_dir = tmp_path / "runs"
    good = [make_result(runs_dir, m, s, [50.0 + s, 60.0 + s]) for m in ("Vanilla", "Mixup") for s in (0, 1)]
    analysis = make_analysis(good[0], "calibration", {"ece": 0.1})
    analysis.write_text(analysis.read_text().replace("0.1", "Infinity"))
    bad = corrupt_runs(runs_dir)
    for path, why in bad.items():
        with pytest.raises(ResultFileError, match=re.escape(why)):
            load_result(path)
    db = tmp_path / "r.db"
    proc = run_tool("tools/leaderboard.py", "ingest", runs_dir, "--db", db, check=False, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # 3: some files rejected, others in
    assert "Traceback" not in proc.stderr
    assert "ingested 4 new" in proc.stdout and "5 rejected" in proc.stdout
    for path, why in bad.items():
        line = [ln for ln in proc.stdout.splitlines() if str(path) in ln]
        assert line and why in line[0], (why, proc.stdout)
    assert "calibration.json: summary value ece is not a finite number" in proc.stdout
    for command in ("show", "report"):
        out = run_tool(
            "tools/leaderboard.py",
            command,
            "--db",
            db,
            "--metric",
            "last",
            *(["--out", tmp_path / "report"] if command == "report" else []),
            timeout=120,
        )
        assert "Traceback" not in out.stderr
    assert "Mixup" in run_tool("tools/leaderboard.py", "show", "--db", db, "--metric", "last").stdout


def test_a_non_finite_database_row_cannot_break_a_report(tmp_path):
    """Rows written behind mixbench's back (or by an older version) with NaN/inf in them."""
    for s in (0, 1):
        make_result(tmp_path / "runs", "Mixup", s, [50.0, 60.0 + s])
    db = tmp_path / "r.db"
    assert ingest_paths([tmp_path / "runs"], db_url=str(db)).ok
    engine = make_engine(str(db))
    with engine.begin() as conn:  # raw SQL: nothing of mixbench in between
        conn.execute(text("UPDATE epochs SET top1 = :inf WHERE idx = 1"), {"inf": math.inf})
        conn.execute(
            text("UPDATE runs SET wall_s = :nan, s_per_iter = :inf"), {"nan": math.nan, "inf": -math.inf}
        )
        assert conn.execute(text("SELECT top1 FROM epochs WHERE idx = 1")).scalars().all() == [math.inf] * 2
    engine.dispose()
    lb = build_leaderboard(str(db), metric="best")
    assert [c.values for c in lb.cells] == [[50.0, 50.0]]  # the infinite epochs read as missing
    for command in ("show", "report"):
        out = run_tool(
            "tools/leaderboard.py",
            command,
            "--db",
            db,
            *(["--out", tmp_path / "report"] if command == "report" else []),
            timeout=120,
        )
        assert "Traceback" not in out.stderr
