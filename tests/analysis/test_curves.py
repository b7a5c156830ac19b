"""Training curves of several runs from the results database: one PNG, both runs drawn."""

import json

import numpy as np
import pytest
from mbtest.analysis import tool_main
from PIL import Image

from mixbench.analysis.curves import histories_from_db
from mixbench.leaderboard import ingest_paths
from mixbench.results import atomic_write_json

TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's tab10, runs 1 and 2


def test_curves_png_of_two_runs_from_the_database(trained_dir, tmp_path):
    data = json.loads((trained_dir / "result.json").read_text())
    runs = tmp_path / "runs"
    atomic_write_json(runs / "a" / "result.json", data)  # the real run
    other = json.loads(json.dumps(data))  # a second run: other name, lower accuracy
    other["run"].update(name="b_other", config_hash="sha256:other")
    for h in other["history"]:
        h["top1"] = h["top1"] / 2
    atomic_write_json(runs / "b" / "result.json", other)
    db = str(tmp_path / "r.db")
    assert len(ingest_paths([runs], db_url=db).inserted) == 2

    hist = histories_from_db(db)
    assert set(histories_from_db(db, {"name": "b_other"})) == {"b_other"}
    with pytest.raises(ValueError, match="cannot filter on colour; filter keys are dataset"):
        histories_from_db(db, {"colour": "red"})
    assert set(hist) == {data["run"]["name"], "b_other"}
    assert [h["top1"] for h in hist["b_other"]] == [h["top1"] / 2 for h in data["history"]]
    assert [h["train_loss"] for h in hist["b_other"]] == [h["train_loss"] for h in data["history"]]

    out = tmp_path / "curves.png"
    assert tool_main("curves", "--db", db, "--out", out, "--title", "two runs") == 0
    img = Image.open(out)
    assert img.size == (10 * 120, 4 * 120)  # figsize (10, 4) at 120 dpi
    pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    for colour in (TAB_BLUE, TAB_ORANGE):
        assert (np.abs(pixels - colour).sum(1) < 30).sum() > 50, colour
