"""bench/mixers.py draws its numbers (``--plot``, ``--replot``): a PNG from a results dict
of the shape ``run`` returns."""

import json
import subprocess
import sys

from mbtest.repo import REPO, load_script


def _results():
    def size(scale):
        return {
            "reference_fwd_bwd_s": 0.5 * scale,
            "reference_batch_timed": 128,
            "mixers": {
                name: {"s": t * scale, "ratio": t / 0.5, "median_s": t, "rounds": 3}
                for name, t in (("Mixup [batch]", 1e-3), ("timm Mixup [batch]", 2e-3))
            },
            "head_to_head": [
                {
                    "ours": "Mixup [batch]",
                    "peer": "timm Mixup [batch]",
                    "ours_s": 1e-3,
                    "peer_s": 2e-3,
                    "speedup": 2.0,
                    "paired_speedup": 1.9,
                    "rounds": 3,
                    "target": 1.0,
                    "met": True,
                }
            ],
        }

    return {
        "device": "cpu",
        "batch": 128,
        "threads": 1,
        "torch": "x",
        "sizes": {"32": size(1), "224": size(50)},
    }


def test_plot_writes_a_png(tmp_path):
    bench = load_script("bench/mixers.py")
    bench.plot(_results(), str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replot_redraws_from_a_saved_json_without_running(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(_results()))
    proc = subprocess.run(
        [
            sys.executable,
            "bench/mixers.py",
            "--replot",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "b.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.png").stat().st_size > 10_000 and "reference fwd+bwd" not in proc.stdout
    bad = subprocess.run(
        [sys.executable, "bench/mixers.py", "--replot", str(tmp_path / "r.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--replot needs --plot PATH" in bad.stderr
