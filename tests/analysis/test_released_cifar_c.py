"""The released CIFAR-10-C / CIFAR-100-C arrays (Hendrycks & Dietterich 2019): a tiny folder in
the exact layout, <corruption>.npy uint8 (5 N, 32, 32, 3) with severities 1..5 in consecutive
blocks of N, and labels.npy (5 N,)."""

import json

import numpy as np
import pytest
import torch
from mbtest.analysis import tool_main
from torch import nn

from mixbench.analysis.corruptions import ReleasedCorruptionSet, released_corruption_accuracy

N = 4


def pixel(severity, i, c):
    return 10 * severity + 3 * i + c  # tells block, image and channel apart


@pytest.fixture
def released(tmp_path):
    """fog: severities 1-2 bright (the model below is right), 3-5 half dark (half right);
    contrast: all dark (always wrong). Every label is 1."""
    fog = np.zeros((5 * N, 32, 32, 3), np.uint8)
    for s in range(1, 6):
        for i in range(N):
            for c in range(3):
                fog[(s - 1) * N + i, ..., c] = pixel(s, i, c)
            if s >= 3 and i % 2:
                fog[(s - 1) * N + i, ..., 0] = 0
            else:
                fog[(s - 1) * N + i, 0, 0, 0] = 255
    np.save(tmp_path / "fog.npy", fog)
    np.save(tmp_path / "contrast.npy", np.zeros((5 * N, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.ones(5 * N, np.int64))
    return tmp_path


def test_reader_picks_the_severity_block_and_channels_first(released):
    ds = ReleasedCorruptionSet(released, "fog", severity=2)
    assert len(ds) == N
    item = ds[3]
    assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.uint8
    assert [int(item["inputs"][c, 5, 5]) for c in range(3)] == [pixel(2, 3, c) for c in range(3)]
    assert int(item["data_samples"]) == 1
    assert len(ReleasedCorruptionSet(released, "fog", 5, max_samples=2)) == 2


def test_reader_says_what_is_missing_or_malformed(released):
    with pytest.raises(FileNotFoundError, match=r"<root>/<corruption>.npy and <root>/labels.npy"):
        ReleasedCorruptionSet(released, "snow", 1)
    np.save(released / "frost.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 \(5 N, H, W, C\)"):
        ReleasedCorruptionSet(released, "frost", 1)
    with pytest.raises(ValueError):
        ReleasedCorruptionSet(released, "fog", 6)


class BrightCorner(nn.Module):
    """Predicts class 1 when the top-left red pixel is bright (> 0.5), else class 0."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        bright = (x[:, 0, 0, 0] > 0.5).float()
        return torch.stack([1 - bright, bright], 1)


def test_accuracy_per_severity_by_hand(released):
    clean = [{"inputs": torch.full((3, 32, 32), 255, dtype=torch.uint8), "data_samples": torch.tensor(1)}] * 3
    out = released_corruption_accuracy(BrightCorner(), released, clean, batch_size=3)
    assert out["per_severity"]["fog"] == {"1": 100.0, "2": 100.0, "3": 50.0, "4": 50.0, "5": 50.0}
    assert out["per_severity"]["contrast"] == {str(s): 0.0 for s in range(1, 6)}
    assert out["per_corruption"] == {"fog": 70.0, "contrast": 0.0}
    assert out["summary"] == {"clean_top1": 100.0, "mca": 35.0, "mce_rel_clean": 65.0}
    with pytest.raises(ValueError, match="at least one corruption and one severity"):
        released_corruption_accuracy(BrightCorner(), released, clean, severities=())


def test_corruption_tool_reads_released_files_of_the_run(trained_dir, tmp_path):
    """Digits are 16 x 16 grey: the same layout with (5 N, 16, 16, 1) arrays."""
    from mixbench.analysis.common import build_val_dataset
    from mixbench.config import load_config

    val = build_val_dataset(load_config(trained_dir / "config.yaml"), max_samples=20)
    images = torch.stack([val[i]["inputs"] for i in range(20)]).permute(0, 2, 3, 1).numpy()
    labels = np.array([int(val[i]["data_samples"]) for i in range(20)])
    np.save(tmp_path / "brightness.npy", np.concatenate([images] * 5))  # uncorrupted copies
    np.save(tmp_path / "labels.npy", np.concatenate([labels] * 5))
    wd = tmp_path / "wd"
    assert (
        tool_main(
            "corruption",
            trained_dir / "config.yaml",
            trained_dir / "epoch_3.pth",
            "--released",
            tmp_path,
            "--max-samples",
            20,
            "--work-dir",
            wd,
            "--device",
            "cpu",
        )
        == 0
    )
    out = json.loads((wd / "analysis" / "corruption.json").read_text())
    assert out["num_samples"] == 20 and list(out["per_corruption"]) == ["brightness"]
    # the "corrupted" images are the clean ones: every severity scores the clean top-1
    assert set(out["per_severity"]["brightness"].values()) == {out["summary"]["clean_top1"]}
    assert out["summary"]["mce_rel_clean"] == 0
