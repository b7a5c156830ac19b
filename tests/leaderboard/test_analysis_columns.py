"""Analysis files (analysis/<kind>.json next to result.json): stored at ingest, aggregated
over seeds into the ECE and FGSM columns, shown only where some cell has them."""

import csv
import io
import json
import math
import sqlite3

import pytest
from mbtest.leaderboard import history_for, make_analysis, make_result
from sqlalchemy import select

from mixbench.leaderboard import build_leaderboard, ingest_paths, make_engine
from mixbench.leaderboard.db import analysis
from mixbench.leaderboard.report_html import html_report
from mixbench.leaderboard.report_md import csv_report, latex_report, markdown_report

ECE_HEADER, FGSM_HEADER = "ECE (%)", "FGSM 8/255 top-1 (%)"


def calib(path, ece, n_bins=15, **kw):
    return make_analysis(
        path,
        "calibration",
        {"top1": 90.0, "ece": ece, "adaptive_ece": ece, "nll": 0.3, "brier": 0.1},
        n_bins=n_bins,
        num_samples=1000,
        **kw,
    )


def adv(path, fgsm8, **kw):
    return make_analysis(
        path,
        "adversarial",
        {"clean_top1": 90.0, "fgsm_eps8_top1": fgsm8, "fgsm_eps4_top1": fgsm8 + 5},
        seed=0,
        **kw,
    )


def write_runs(root):
    """cifar100: Vanilla 3 seeds, Mixup 2 seeds, with analyses; cifar10: none."""
    v = [make_result(root, "Vanilla", s, history_for(70.0 + s)) for s in range(3)]
    m = [make_result(root, "Mixup", s, history_for(72.0 + s)) for s in range(2)]
    make_result(root, "Vanilla", 0, history_for(90.0), dataset="cifar10")
    calib(v[0], 4.0), calib(v[1], 6.0), calib(v[2], 5.0)
    adv(v[0], 20.0), adv(v[1], 30.0)  # seed 2 has no adversarial.json
    calib(m[0], 2.0), calib(m[1], 1.0, n_bins=10)  # 10 bins: not comparable, left out
    adv(m[0], 40.0), adv(m[1], 44.0)
    return v, m


def cells_by_method(lb, dataset="cifar100"):
    return {c.method: c for c in lb.cells if c.dataset == dataset}


def test_aggregates_match_hand_computed_values(tmp_path):
    write_runs(tmp_path / "runs")
    db = str(tmp_path / "r.db")
    report = ingest_paths([tmp_path / "runs"], db_url=db)
    assert report.ok and len(report.analyses) == 9
    cells = cells_by_method(build_leaderboard(db))
    # the top-1 aggregates are those of the runs' histories, untouched by the analyses
    assert cells["Vanilla"].values == [70.0, 71.0, 72.0] and cells["Vanilla"].mean == 71.0
    assert cells["Vanilla"].std == 1.0 and cells["Mixup"].mean == 72.5
    van, mix = cells["Vanilla"].analysis, cells["Mixup"].analysis
    # Vanilla ECE 4, 6, 5: mean 5, sample var ((-1)^2 + 1^2 + 0) / 2 = 1
    assert (van["ece"].mean, van["ece"].std, van["ece"].n) == (5.0, 1.0, 3)
    # Vanilla FGSM 20, 30: mean 25, var (25 + 25) / 1 = 50
    assert van["fgsm8_top1"].mean == 25.0 and van["fgsm8_top1"].n == 2
    assert van["fgsm8_top1"].std == pytest.approx(math.sqrt(50))
    assert (mix["ece"].mean, mix["ece"].std, mix["ece"].n) == (2.0, None, 1)
    assert mix["fgsm8_top1"].mean == 42.0 and mix["fgsm8_top1"].std == pytest.approx(math.sqrt(8))
    assert cells_by_method(build_leaderboard(db), "cifar10")["Vanilla"].analysis == {}


def test_columns_appear_where_present_in_every_format(tmp_path):
    write_runs(tmp_path / "runs")
    db = str(tmp_path / "r.db")
    ingest_paths([tmp_path / "runs"], db_url=db)
    lb = build_leaderboard(db)
    md = markdown_report(lb)
    c100 = md[md.index("## cifar100") : md.index("## Overall")]
    c10 = md[md.index("## cifar10 ") : md.index("## cifar100")]
    assert f"| {ECE_HEADER} | {FGSM_HEADER} |" in c100.splitlines()[2]
    assert ECE_HEADER not in c10 and FGSM_HEADER not in c10
    rows = {r.split(" | ")[1]: r for r in c100.splitlines() if r.startswith("| ") and "---" not in r}
    assert rows["Vanilla"].startswith("| 2 | Vanilla | 71.00 ± 1.00 | 3 |")
    assert rows["Vanilla"].endswith("| 5.00 ± 1.00 | 25.00 ± 7.07 (2 of 3 seeds) |")
    assert rows["Mixup"].endswith("| 2.00 (1 of 2 seeds) | 42.00 ± 2.83 |")
    assert "ECE (15 equal-width bins, %) and top-1 under FGSM at ε = 8/255 (%)" in md

    tex = latex_report(lb)
    assert r"ECE (\%) & FGSM 8/255 top-1 (\%) \\" in tex
    assert r"5.00 $\pm$ 1.00 & 25.00 $\pm$ 7.07 (2 of 3 seeds) \\" in tex
    assert tex.count(r"ECE (\%) &") == 1  # the cifar10 table has no analysis

    page = html_report(lb)
    assert page.count(f"<th>{ECE_HEADER}</th>") == 1
    assert page.count(f"<th>{FGSM_HEADER}</th>") == 1
    assert 'data-sort="25.0">25.00 ± 7.07 (2 of 3 seeds)</td>' in page

    rows = list(csv.DictReader(io.StringIO(csv_report(lb))))
    van = next(r for r in rows if r["dataset"] == "cifar100" and r["method"] == "Vanilla")
    assert (float(van["ece_mean"]), float(van["ece_std"]), van["ece_n_seeds"]) == (5.0, 1.0, "3")
    assert float(van["fgsm8_top1_mean"]) == 25.0 and van["fgsm8_top1_n_seeds"] == "2"
    c10_row = next(r for r in rows if r["dataset"] == "cifar10")
    assert c10_row["ece_mean"] == "" and c10_row["fgsm8_top1_mean"] == ""


def test_no_analysis_no_columns(tmp_path):
    make_result(tmp_path, "Vanilla", 0, history_for(70.0))
    make_result(tmp_path, "Mixup", 0, history_for(72.0))
    db = str(tmp_path / "r.db")
    report = ingest_paths([tmp_path], db_url=db)
    assert report.ok and report.analyses == []
    lb = build_leaderboard(db)
    for text in (markdown_report(lb), latex_report(lb), html_report(lb)):
        assert "ECE" not in text and "FGSM" not in text
    header = csv_report(lb).splitlines()[0].split(",")
    assert header[-6:] == [
        "ece_mean",
        "ece_std",
        "ece_n_seeds",
        "fgsm8_top1_mean",
        "fgsm8_top1_std",
        "fgsm8_top1_n_seeds",
    ]  # stable CSV header


def analysis_dump(db):
    engine = make_engine(db)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(analysis).order_by(analysis.c.id))]
    engine.dispose()
    return rows


def test_reingest_is_idempotent_and_picks_up_later_files(tmp_path):
    v, _ = write_runs(tmp_path / "runs")
    db = str(tmp_path / "r.db")
    ingest_paths([tmp_path / "runs"], db_url=db)
    before = analysis_dump(db)
    again = ingest_paths([tmp_path / "runs"], db_url=db)
    assert again.analyses == [] and len(again.unchanged) == 6
    assert analysis_dump(db) == before  # not even ingested_at moved

    late = adv(v[2], 40.0, minutes=60)  # written after the first ingest
    newer = calib(v[0], 7.0, minutes=60)  # re-run of the calibration: replaces 4.0
    older = adv(v[1], 99.0, minutes=1)  # an older copy of seed 1's file: ignored
    report = ingest_paths([tmp_path / "runs"], db_url=db)
    assert sorted(report.analyses) == sorted([str(late), str(newer)])
    assert len(report.unchanged) == 6 and not report.updated and report.ok
    assert older.exists()
    van = cells_by_method(build_leaderboard(db))["Vanilla"].analysis
    assert van["fgsm8_top1"].mean == pytest.approx(30.0) and van["fgsm8_top1"].n == 3  # 20, 30, 40
    assert van["ece"].mean == pytest.approx(6.0)  # 7, 6, 5


def test_bad_analysis_file_is_rejected_run_still_ingested(tmp_path):
    path = make_result(tmp_path, "Vanilla", 0, history_for(70.0))
    calib(path, 3.0)
    (path.parent / "analysis" / "broken.json").write_text("[1, 2]")
    (path.parent / "analysis" / "torn.json").write_text('{"summary": {"ece"')
    db = str(tmp_path / "r.db")
    report = ingest_paths([tmp_path], db_url=db)
    assert report.inserted == [str(path)] and len(report.analyses) == 1
    why = dict(report.rejected)
    assert set(why) == {str(path.parent / "analysis" / n) for n in ("broken.json", "torn.json")}
    broken = why[str(path.parent / "analysis" / "broken.json")]
    assert "expected a JSON object with a 'summary'" in broken
    assert "REJECTED" in report.summary() and "1 analysis files stored" in report.summary()
    assert build_leaderboard(db).cells[0].analysis["ece"].mean == 3.0


def test_kind_is_the_file_name_a_renamed_copy_does_not_shadow(tmp_path):
    path = make_result(tmp_path, "Vanilla", 0, history_for(70.0))
    original = calib(path, 3.0)
    copy = original.with_name("calibration_old.json")
    data = json.loads(original.read_text())
    data["summary"]["ece"] = 9.0
    copy.write_text(json.dumps(data))
    db = str(tmp_path / "r.db")
    assert len(ingest_paths([tmp_path], db_url=db).analyses) == 2
    assert [r[2] for r in analysis_dump(db)] == ["calibration", "calibration_old"]
    assert build_leaderboard(db).cells[0].analysis["ece"].mean == 3.0


def test_analysis_older_than_the_result_is_stale_not_shown(tmp_path):
    path = make_result(tmp_path, "Vanilla", 0, history_for(70.0), minutes=30)  # re-run
    calib(path, 3.0, minutes=20)  # evaluated the previous attempt's checkpoint
    adv(path, 50.0, minutes=40)  # evaluated this one
    db = str(tmp_path / "r.db")
    assert len(ingest_paths([tmp_path], db_url=db).analyses) == 2
    lb = build_leaderboard(db)
    assert set(lb.cells[0].analysis) == {"fgsm8_top1"}
    assert [(r.name, kind) for r, kind in lb.stale_analyses] == [(path.parent.name, "calibration")]
    md = markdown_report(lb)
    assert ECE_HEADER not in md and f"| {FGSM_HEADER} |" in md
    assert (
        f"- stale analysis (not shown): {path.parent.name} [Vanilla seed 0]: "
        "analysis/calibration.json is older than the run's result.json"
    ) in md


def test_database_from_before_the_analysis_table_gains_it(tmp_path):
    path = make_result(tmp_path, "Vanilla", 0, history_for(70.0))
    db = tmp_path / "r.db"
    ingest_paths([tmp_path], db_url=str(db))
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE analysis")
    calib(path, 3.0)
    assert len(ingest_paths([tmp_path], db_url=str(db)).analyses) == 1
    assert build_leaderboard(str(db)).cells[0].analysis["ece"].mean == 3.0


def test_postgresql_gives_the_same_analysis_columns(tmp_path, pg_url):
    write_runs(tmp_path / "runs")
    sqlite_db = str(tmp_path / "r.db")
    for db in (sqlite_db, pg_url):
        assert len(ingest_paths([tmp_path / "runs"], db_url=db).analyses) == 9
        assert ingest_paths([tmp_path / "runs"], db_url=db).analyses == []
    assert markdown_report(build_leaderboard(pg_url)) == markdown_report(build_leaderboard(sqlite_db))
    assert json.loads(analysis_dump(pg_url)[0][3]) == json.loads(analysis_dump(sqlite_db)[0][3])
