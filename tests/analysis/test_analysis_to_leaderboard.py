"""End to end: the real calibration and FGSM tools on a tiny trained digits run, then
ingest and report: the leaderboard shows the numbers the tools wrote."""

import json
import shutil

import pytest
from mbtest.analysis import tool_main

from mixbench.leaderboard import build_leaderboard, ingest_paths
from mixbench.leaderboard.report_md import csv_rows, markdown_report
from mixbench.results import median_last_n


def test_calibration_and_fgsm_reach_the_leaderboard(trained_dir, tmp_path):
    run = tmp_path / "run"  # a copy without the analyses other tests wrote
    run.mkdir()
    for name in ("result.json", "config.yaml", "epoch_3.pth"):
        shutil.copy(trained_dir / name, run / name)
    ckpt, cfg = run / "epoch_3.pth", run / "config.yaml"
    db = str(tmp_path / "r.db")
    assert ingest_paths([run], db_url=db).ok
    assert "ECE" not in markdown_report(build_leaderboard(db))  # no analysis yet

    common = ("--max-samples", 120, "--device", "cpu")
    assert tool_main("calibration", cfg, ckpt, *common) == 0
    assert tool_main("robustness_adv", cfg, ckpt, "--attacks", "fgsm", "--eps", 8, *common) == 0
    calib = json.loads((run / "analysis" / "calibration.json").read_text())
    adv = json.loads((run / "analysis" / "adversarial.json").read_text())
    assert calib["num_samples"] == adv["num_samples"] == 120 and calib["n_bins"] == 15
    ece, fgsm8 = calib["summary"]["ece"], adv["summary"]["fgsm_eps8_top1"]
    assert 0 < ece < 100 and fgsm8 < adv["summary"]["clean_top1"]

    report = ingest_paths([run], db_url=db)  # result.json unchanged, analyses new
    assert report.unchanged == [str(run / "result.json")]
    assert sorted(report.analyses) == [
        str(run / "analysis" / n) for n in ("adversarial.json", "calibration.json")
    ]
    lb = build_leaderboard(db)
    (cell,) = lb.cells
    history = json.loads((run / "result.json").read_text())["history"]
    assert cell.values == [median_last_n([h["top1"] for h in history], 10)]  # untouched
    assert cell.analysis["ece"].mean == pytest.approx(ece)
    assert cell.analysis["fgsm8_top1"].mean == pytest.approx(fgsm8)
    row = next(r for r in markdown_report(lb).splitlines() if r.startswith("| 1 | Vanilla |"))
    assert row.endswith(f"| {ece:.2f} | {fgsm8:.2f} |")
    assert csv_rows(lb)[0]["ece_mean"] == pytest.approx(ece)
