"""configs/sweeps/all_methods.yaml: every shipped method, on every backbone that can carry
it, trains end to end through the sweep and reaches the leaderboard under its own name."""

import json

import yaml
from mbtest.sweep import CONFIGS, run_sweep

from mixbench.config import load_config

SWEEP = CONFIGS / "sweeps" / "all_methods.yaml"


def test_every_method_file_is_in_the_all_methods_sweep():
    entries = yaml.safe_load(SWEEP.read_text())["axes"]["method"].values()
    listed = {(SWEEP.parent / (f if isinstance(f, str) else f["config"])).resolve() for f in entries}
    shipped = {p.resolve() for p in (CONFIGS / "methods").glob("*.yaml")}
    assert shipped == listed, f"missing from all_methods.yaml: {sorted(p.name for p in shipped - listed)}"


def test_all_methods_run_to_a_leaderboard(tmp_path):
    db = tmp_path / "results.db"
    out = run_sweep(
        "run", SWEEP, "--work-root", tmp_path / "work_dirs", "--slots", "2", "--db", db, timeout=1800
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from mixbench.leaderboard import build_leaderboard
    from mixbench.sweep import load_sweep

    sweep = load_sweep(SWEEP, work_root=tmp_path / "work_dirs")
    ran = {}
    for run in sweep.runs:
        result = json.loads((run.work_dir / "result.json").read_text())
        assert result["status"] == "finished", (run.name, result.get("error"))
        assert result["run"]["method"] == run.axes["method"]
        written = load_config(run.work_dir / "config.yaml")["method"]
        assert written == run.config["method"]  # the whole method, as the file says
        ran.setdefault(run.axes["backbone"], set()).add(run.axes["method"])
    methods = set(yaml.safe_load(SWEEP.read_text())["axes"]["method"])
    assert ran["resnet8_w8"] == methods - {"TransMix", "SMMix", "TL-Align", "MixPro", "MergeMix", "TokenMix"}
    assert ran["vit_tiny_d4"] == methods - {"AttentiveMix", "AttentiveMix+", "AlignMix", "SnapMix"}
    board = build_leaderboard(str(db))
    on_board = {}
    for cells in board.tables.values():
        for cell in cells:
            on_board.setdefault(cell.backbone, set()).add(cell.method)
    assert on_board == ran
    assert "| AutoMix |" in out.stdout.replace("  ", " ")
