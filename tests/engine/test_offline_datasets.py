"""The offline real datasets: scikit-learn digits and Fashion-MNIST's IDX files."""

import gzip
import shutil
import struct

import pytest
import torch

from mixbench.data import DatasetError, Digits, FashionMNIST
from mixbench.data.fashion_mnist import DEFAULT_ROOT


def test_digits_fixed_stratified_split():
    train, test = Digits("train"), Digits("test")
    assert (len(train), len(test)) == (1347, 450)
    assert train.images.shape[1:] == (1, 16, 16) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255
    assert torch.equal(Digits("train").labels, train.labels)  # fixed split
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 46  # stratified: ~45 per class
    assert Digits("train", scale=1).images.shape[2:] == (8, 8)
    assert len(Digits("train", max_samples=100)) == 100
    with pytest.raises(ValueError, match="split must be one of"):
        Digits("val")


def test_fashion_mnist_from_debian_package():
    test = FashionMNIST(split="test")
    assert len(test) == 10_000 and test.images.shape[1:] == (1, 28, 28)
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    assert test.classes[9] == "Ankle boot"
    assert len(FashionMNIST(split="train", max_samples=5)) == 5


def test_fashion_mnist_plain_idx_files_and_errors(tmp_path):
    root = tmp_path / "fm"
    root.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(f"{DEFAULT_ROOT}/{name}.gz") as src, open(root / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    plain = FashionMNIST(root=str(root), split="test")
    assert torch.equal(plain.images, FashionMNIST(split="test").images)
    with pytest.raises(
        DatasetError, match="train-images-idx3-ubyte.gz not found.*apt-get install dataset-fashion-mnist"
    ):
        FashionMNIST(root=str(root), split="train")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=str(tmp_path / "missing"))
    data = (root / "t10k-images-idx3-ubyte").read_bytes()
    (root / "t10k-images-idx3-ubyte").write_bytes(data[:5000])
    with pytest.raises(DatasetError, match="truncated"):
        FashionMNIST(root=str(root), split="test")
    (root / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">HBB", 0, 0x0D, 1) + b"\0" * 8)
    with pytest.raises(DatasetError, match="not an unsigned-byte IDX file"):
        FashionMNIST(root=str(root), split="test")


def test_in_memory_batches_are_gathered_once_and_equal_per_sample_collation():
    from mmengine.dataset import default_collate as mmengine_collate
    from torch.utils.data import DataLoader

    from mixbench.data.base import GatheredBatch, batch_collate

    ds = Digits("test", max_samples=100)
    fast = DataLoader(ds, batch_size=32, shuffle=False, collate_fn=batch_collate)
    slow = DataLoader(
        ds, batch_size=32, shuffle=False, collate_fn=lambda items: mmengine_collate(list(items))
    )
    for a, b in zip(fast, slow):
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["data_samples"], b["data_samples"])
    gathered = ds.__getitems__([3, 1, 2])
    assert isinstance(gathered, GatheredBatch) and len(gathered) == 3
    assert torch.equal(gathered[0]["inputs"], ds[3]["inputs"]) and int(gathered[1]["data_samples"]) == int(
        ds[1]["data_samples"]
    )
    assert torch.equal(mmengine_collate(gathered)["inputs"], batch_collate(gathered)["inputs"])


def test_in_memory_device_option():
    assert Digits("test", max_samples=4, device="cpu").images.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Digits("test", max_samples=4, device="cuda")
    else:
        ds = Digits("test", max_samples=8, device="cuda")
        assert ds.__getitems__([0, 5]).images.is_cuda
