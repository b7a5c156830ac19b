"""No code runs from a checkpoint (issue 17): every load is weights-only; a crafted .pth whose
unpickling would write a marker file is refused by the analysis loader, tools/test.py and
tools/train.py --resume, with how to allow a trusted file; mixbench's own checkpoints load."""

import pathlib

import pytest
import torch
from mbtest.repo import REPO, load_script

from mixbench.analysis.common import load_checkpoint_state
from mixbench.checkpoint import TRUST_ENV, UnsafeCheckpointError

train_tool = load_script("tools/train.py")
test_tool = load_script("tools/test.py")
DEMO = REPO / "configs/digits/resnet8_mixup.yaml"
TINY = [
    "train_dataloader.dataset.max_samples=128",
    "val_dataloader.dataset.max_samples=64",
    "model.backbone.width=8",
    "train_cfg.max_epochs=1",
]


class WritesMarker:
    """Unpickled, it writes a file: what a hostile checkpoint would do (or worse)."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "code ran")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ckpt") / "run"
    assert train_tool.main([str(DEMO), "--work-dir", str(wd), "--cfg-options", *TINY]) == 0
    good = wd / "epoch_1.pth"
    evil = wd.parent / "evil.pth"
    ckpt = torch.load(good, map_location="cpu", weights_only=False)  # our own file: trusted
    ckpt["meta"]["note"] = WritesMarker(wd.parent / "marker")
    torch.save(ckpt, evil)
    return wd, good, evil, wd.parent / "marker"


def test_own_checkpoints_load_weights_only(run):
    wd, good, _, _ = run
    assert any(k.startswith("backbone.") for k in load_checkpoint_state(good))
    assert test_tool.main([str(wd / "config.yaml"), str(good), "--work-dir", str(wd / "test")]) == 0


def test_crafted_checkpoint_runs_no_code_anywhere(run, tmp_path, capsys):
    wd, _, evil, marker = run
    with pytest.raises(UnsafeCheckpointError, match=f"refused.*{TRUST_ENV}={evil}"):
        load_checkpoint_state(evil)
    assert not marker.exists()
    assert test_tool.main([str(wd / "config.yaml"), str(evil), "--work-dir", str(tmp_path / "t")]) == 2
    assert "checkpoint refused" in capsys.readouterr().err and not marker.exists()
    rc = train_tool.main(
        [
            str(DEMO),
            "--work-dir",
            str(tmp_path / "resumed"),
            "--resume",
            str(evil),
            "--cfg-options",
            *TINY[:-1],
            "train_cfg.max_epochs=2",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{TRUST_ENV}=" in err and not marker.exists()


def test_a_trusted_file_is_loaded_in_full(run, monkeypatch):
    _, _, evil, marker = run
    monkeypatch.setenv(TRUST_ENV, f"/nonexistent.pth:{evil}")
    load_checkpoint_state(evil)
    assert marker.read_text() == "code ran"  # the crafted file is real: loaded in full it runs
    marker.unlink()
