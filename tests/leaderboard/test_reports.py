"""The reports: Markdown, tidy CSV, LaTeX, and the self-contained page opened in Chromium."""

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mbtest.leaderboard import make_result, write_reference_runs

from mixbench.leaderboard import (
    REPORT_FILES,
    build_leaderboard,
    ingest_paths,
    log_to_wandb,
    markdown_leaderboard,
    write_report,
)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MIXBENCH_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    write_reference_runs(root / "runs")
    db = str(root / "results.db")
    assert ingest_paths([root / "runs"], db_url=db).ok
    paths = write_report(db, root / "out")
    return db, paths


def test_writes_every_report(reports):
    _, paths = reports
    assert {k: p.name for k, p in paths.items()} == REPORT_FILES
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_markdown_tables_best_bold_average_rank_protocol(reports):
    db, paths = reports
    md = paths["markdown"].read_text()
    assert md == markdown_leaderboard(db)
    assert "Protocol: per run, median top-1 of the last 10 evaluations (`median_last10`)" in md
    assert "significant (*) at α = 0.05" in md
    titles = re.findall(r"^## (.*)$", md, flags=re.M)
    assert titles == [
        "cifar10 · resnet18_cifar · 200 epochs",
        "cifar100 · resnet18_cifar · 200 epochs",
        "cifar100 · resnet18_cifar · 400 epochs",
        "Overall: average rank across datasets",
        "Runs not counted",
    ]
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    puzzle = next(r for r in rows if "| PuzzleMix |" in r and "80.00" in r)
    assert "**80.00 (1 seed, no error bar)**" in puzzle and "+3.50 |" in puzzle
    mixup = next(r for r in rows if "| Mixup |" in r and "78.50" in r)
    assert (
        "| 2 | Mixup | 78.50 ± 0.56 | 3 | [77.12, 79.88] | +2.00* | 0.010 | 1.10× | 1100 "
        "| 4 GPU-h | 78.50 (median_last10) | 78.52 (median_last10) | -0.02 | +2.10 |"
    ) == mixup
    assert md.count("Top-1, Δ, CI and ranks: median_last10") == 3  # under every table
    assert "| 2 | Mixup | 1.50 | 2 | 1.50 | 1.50 |" in md  # average-rank table
    assert "- in progress (not counted): still_running" in md
    assert "- excluded: old_mixup_s0" in md


def test_csv_is_tidy_one_row_per_cell(reports):
    _, paths = reports
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    m = next(
        r for r in rows if r["dataset"] == "cifar100" and r["epochs"] == "200" and r["method"] == "Mixup"
    )
    assert m["metric"] == "median_last10" and m["seeds"] == "0 1 2"
    assert float(m["mean"]) == pytest.approx(78.5) and float(m["std"]) == pytest.approx(0.31**0.5)
    assert float(m["delta_vs_vanilla"]) == pytest.approx(2.0) and m["significant"] == "True"
    assert float(m["reported_top1"]) == 78.52 and m["reported_metric"] == "median_last10"
    p = next(r for r in rows if r["method"] == "PuzzleMix")
    assert p["std"] == "" and p["ci95_low"] == "" and p["welch_p"] == ""


def test_latex_escapes_and_bolds_best(reports):
    _, paths = reports
    tex = paths["latex"].read_text()
    assert tex.count(r"\begin{tabular}") == 3 and tex.count(r"\bottomrule") == 3
    assert r"\textbf{80.00 (1 seed, no error bar)}" in tex
    assert r"resnet18\_cifar" in tex and r"78.50 $\pm$ 0.56" in tex
    assert "median_last10" not in tex.replace(r"median\_last10", "")


def test_page_is_self_contained(reports):
    _, paths = reports
    page = paths["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "<script src" not in page
    assert page.count('<img src="data:image/svg+xml;base64,') == 8  # 1 heatmap, 1 budget,
    # 3 tables x (accuracy vs cost + validation curves)


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(e.message || ('failed to load ' + (e.target && e.target.src)));
}, true);
var consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' '));
  consoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  function methods() {
    return Array.prototype.map.call(
      document.querySelectorAll('#table-1 tbody tr td:nth-child(2)'),
      function (td) { return td.textContent; });
  }
  var before = methods();
  var th = document.querySelector('#table-1 th:nth-child(2)');
  th.click(); var asc = methods(); th.click(); var desc = methods();
  var out = {
    images: imgs.length,
    loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    tables: document.querySelectorAll('table.sortable').length,
    rows: document.querySelectorAll('table.sortable tbody tr').length,
    sort: [before, asc, desc], errors: window.__errors
  };
  var pre = document.createElement('pre');
  pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args, user_data_dir: Path) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: install it with sudo bash tools/ci/install_chromium.sh "
            "(or set MIXBENCH_CHROMIUM)",
            pytrace=False,
        )
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_page_renders_in_headless_chromium(reports, tmp_path):
    """Tables rows present, every plot image decoded, sorting works, no console error; a
    screenshot is saved (to $MIXBENCH_TEST_ARTIFACTS too when set)."""
    _, paths = reports
    probed = tmp_path / "probed.html"
    probed.write_text(paths["html"].read_text().replace("<head>", "<head>" + PROBE, 1))
    proc = chromium(
        "--virtual-time-budget=5000", "--dump-dom", probed.as_uri(), user_data_dir=tmp_path / "profile"
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert match, "the page's load event never ran:\n" + proc.stdout[-2000:]
    probe = json.loads(html.unescape(match.group(1)))
    assert probe["errors"] == []
    assert probe["images"] == 8 and probe["loaded"] == 8
    assert probe["tables"] == 4 and probe["rows"] == 4 + 4 + 2 + 3  # average rank + 3 tables
    before, asc, desc = probe["sort"]
    assert before == ["PuzzleMix", "Mixup", "CutMix", "Vanilla"]  # by rank
    assert asc == ["CutMix", "Mixup", "PuzzleMix", "Vanilla"] and desc == asc[::-1]

    shot = tmp_path / "leaderboard.png"
    chromium(
        "--window-size=1400,1800",
        f"--screenshot={shot}",
        paths["html"].as_uri(),
        user_data_dir=tmp_path / "profile",
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a page, not a blank
    if os.environ.get("MIXBENCH_TEST_ARTIFACTS"):
        dest = Path(os.environ["MIXBENCH_TEST_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)


def test_cli_report_and_show(reports, tmp_path):
    db, _ = reports
    tool = [sys.executable, str(REPO / "tools" / "leaderboard.py")]
    proc = subprocess.run(
        tool + ["show", "--db", db, "--metric", "last", "--filter", "dataset=cifar10"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    assert "(`last`)" in md and "cifar100" not in md.split("## Overall")[0]
    # last of history_for(v) is v - 1: Vanilla 89, Mixup and CutMix 90
    assert "| 3 | Vanilla | 89.00 (1 seed, no error bar) |" in md
    proc = subprocess.run(
        tool + ["show", "--db", db, "--filter", "colour=red"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "cannot filter on colour" in proc.stderr
    proc = subprocess.run(
        tool + ["report", "--db", str(tmp_path / "new.db"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    printed = dict(line.strip().split(": ", 1) for line in proc.stdout.splitlines())
    assert printed == {k: str(tmp_path / "o" / name) for k, name in REPORT_FILES.items()}
    assert all(Path(p).is_file() for p in printed.values())


def test_columns_empty_for_a_whole_table_are_left_out(tmp_path):
    make_result(tmp_path / "runs", "Mixup", 0, [50.0, 60.0], dataset="digits")
    db = str(tmp_path / "r.db")
    ingest_paths([tmp_path / "runs"], db_url=db)
    header = next(line for line in markdown_leaderboard(db).splitlines() if line.startswith("| Rank"))
    assert header == ("| Rank | Method | Top-1 (%) | Seeds | Peak mem (MB) | Time/run |")


def test_empty_database_still_writes_a_page(tmp_path):
    paths = write_report(str(tmp_path / "empty.db"), tmp_path / "out")
    assert "No finished runs to show." in paths["markdown"].read_text()
    assert "No finished runs to show." in paths["html"].read_text()
    assert paths["csv"].read_text().startswith("dataset,backbone,epochs,")


def test_wandb_logging_offline(tmp_path, monkeypatch, capsys):
    make_result(tmp_path / "runs", "Vanilla", 0, [50.0, 60.0])
    db = str(tmp_path / "r.db")
    ingest_paths([tmp_path / "runs"], db_url=db)
    monkeypatch.setenv("WANDB_PROJECT", "mixbench-test")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no key: offline, no network
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_report(db, tmp_path / "out")
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: a note, no failure
    assert log_to_wandb(build_leaderboard(db), "mixbench-test") is False
    assert "wandb is not installed" in capsys.readouterr().err
