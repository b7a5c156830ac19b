"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from the official python-pickle archives."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from mixbench.registry import DATASETS

from .base import InMemoryDataset, check_split
from .catalog import entry_of
from .io import DatasetError, missing_file_error

HOW_TO_GET = (
    "Download the python version from https://www.cs.toronto.edu/~kriz/cifar.html "
    "({archive}) and extract it so that {folder}/ lies under root."
)


def _load_pickle(path: Path, how: str) -> dict:
    if not path.is_file():
        raise missing_file_error(path, "a CIFAR python-pickle batch file", how)
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DatasetError(f"{path}: not a readable CIFAR pickle ({e}). {how}") from e


def _images(batch: dict, path: Path, shape: tuple) -> np.ndarray:
    """The batch's ``data`` (N rows of C*H*W bytes, channel-major) as uint8 (N, C, H, W)."""
    data = np.asarray(batch.get("data"))
    size = int(np.prod(shape))
    if data.ndim != 2 or data.shape[1] != size:
        raise DatasetError(f"{path}: 'data' should be N x {size} uint8, got {data.shape}")
    return data.reshape(-1, *shape).astype(np.uint8)


class _CIFAR(InMemoryDataset):
    folder = ""
    archive = ""
    train_files: tuple = ()
    test_files: tuple = ()
    meta_file = ""
    label_key = ""
    names_key = ""

    def __init__(self, root: str = "data/cifar", split: str = "train", max_samples=None, device=None):
        check_split(type(self), split)
        base = Path(root)
        if (base / self.folder).is_dir():
            base = base / self.folder
        how = HOW_TO_GET.format(archive=self.archive, folder=self.folder)
        shape = entry_of(type(self)).image_shape
        meta = _load_pickle(base / self.meta_file, how)
        classes = list(meta[self.names_key])
        xs, ys = [], []
        for name in self.train_files if split == "train" else self.test_files:
            batch = _load_pickle(base / name, how)
            if self.label_key not in batch:
                raise DatasetError(f"{base / name}: no {self.label_key!r} entry")
            xs.append(_images(batch, base / name, shape))
            ys.append(np.asarray(batch[self.label_key], dtype=np.int64))
        images, labels = np.concatenate(xs), np.concatenate(ys)
        self.source = str(base)  # named by InMemoryDataset's label check
        super().__init__(torch.from_numpy(images), torch.from_numpy(labels), classes, max_samples, device)


@DATASETS.register_module()
class CIFAR10(_CIFAR):
    """CIFAR-10: 32x32 colour images, 10 classes, 50,000 train / 10,000 test, read from
    ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``."""

    folder = "cifar-10-batches-py"
    archive = "cifar-10-python.tar.gz"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    meta_file = "batches.meta"
    label_key = "labels"
    names_key = "label_names"


@DATASETS.register_module()
class CIFAR100(_CIFAR):
    """CIFAR-100: 32x32 colour images, 100 fine classes, 50,000 train / 10,000 test, read
    from ``cifar-100-python/{train, test, meta}``."""

    folder = "cifar-100-python"
    archive = "cifar-100-python.tar.gz"
    train_files = ("train",)
    test_files = ("test",)
    meta_file = "meta"
    label_key = "fine_labels"
    names_key = "fine_label_names"
