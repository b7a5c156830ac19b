"""Corrupt dataset files (issue 17): a truncated or bad-CRC .gz IDX file and labels outside the
classes fail `tools/prepare_data.py check` and training with a message naming the file."""

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from mbtest.repo import REPO

from mixbench.cli import prepare_data
from mixbench.cli import train as train_tool
from mixbench.data.fashion_mnist import FashionMNIST
from mixbench.data.io import DatasetError

FMNIST = Path("/usr/share/datasets/fashion-mnist")

TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def root(tmp_path):
    """The real Fashion-MNIST test split and a small synthetic train split (fast to read)."""
    out = tmp_path / "fmnist"
    out.mkdir()
    for name in (TEST_IMAGES, TEST_LABELS):
        shutil.copy(FMNIST / name, out / name)
    rng = np.random.default_rng(0)
    write_idx(out / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (128, 28, 28)))
    write_idx(out / "train-labels-idx1-ubyte.gz", np.arange(128) % 10)
    return out


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC-32 trailer: the data inflates, the check fails
    path.write_bytes(bytes(data))


def labels_out_of_range(path: Path) -> None:
    labels = np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=8).copy()
    labels[5] = 12
    write_idx(path, labels)


@pytest.mark.parametrize(
    "damage, name, message",
    [
        (truncate, TEST_IMAGES, "corrupt or truncated gzip file"),
        (bad_crc, TEST_LABELS, "corrupt or truncated gzip file"),
        (labels_out_of_range, TEST_LABELS, "label 12 of sample 5 is outside 0..9"),
    ],
)
def test_check_names_the_bad_file(root, capsys, damage, name, message):
    damage(root / name)
    assert prepare_data.check("fashion_mnist", str(root)) == 1
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.strip().startswith("test")][0]
    assert "FAILED" in line and str(root / name) in line and message in line, out
    assert "Traceback" not in out


def test_training_stops_with_the_file_named(root, tmp_path, capsys):
    truncate(root / TEST_IMAGES)
    with pytest.raises(DatasetError, match="corrupt or truncated gzip file"):
        FashionMNIST(root=str(root), split="test")
    config = REPO / "configs/fashion_mnist/resnet18_w16_vanilla.yaml"
    wd = tmp_path / "wd"
    rc = train_tool.main(
        [
            str(config),
            "--work-dir",
            str(wd),
            "--cfg-options",
            f"train_dataloader.dataset.root={root}",
            f"val_dataloader.dataset.root={root}",
            "train_cfg.max_epochs=1",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "training failed:" in err and str(root / TEST_IMAGES) in err and "download it again" in err
