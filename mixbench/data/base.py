"""Dataset base classes and the error raised when data is missing or malformed."""
from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data import default_collate as torch_default_collate

from mixbench.registry import FUNCTIONS

SPLITS = ("train", "test")


class DatasetError(FileNotFoundError):
    """A dataset file is missing or malformed. The message names the file, what was
    expected there, and where the dataset is obtained."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def missing_file_error(path: Path | str, expected: str, how_to_get: str) -> DatasetError:
    return DatasetError(f"{path} not found: expected {expected}. {how_to_get}")


def check_split(split: str, splits: Sequence[str] = SPLITS) -> str:
    if split not in splits:
        raise ValueError(f"split must be one of {', '.join(map(repr, splits))}, got {split!r}")
    return split


class GatheredBatch(SequenceABC):
    """A batch gathered with one indexing operation by :meth:`InMemoryDataset.__getitems__`.

    :func:`batch_collate` returns it as a batch directly; any other collate function sees
    an ordinary sequence of per-sample dicts (made on demand), so it stays correct."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return {"inputs": self.images[i], "data_samples": self.labels[i]}


@FUNCTIONS.register_module()
def batch_collate(data):
    """Collate for in-memory datasets: a :class:`GatheredBatch` is already a batch; a list
    of samples is stacked as torch's ``default_collate`` does."""
    if isinstance(data, GatheredBatch):
        return {"inputs": data.images, "data_samples": data.labels}
    return torch_default_collate(list(data))


def check_labels(labels: Tensor, num_classes: int, source: str) -> None:
    """Every label must be a class index in ``[0, num_classes)``: a label outside would only
    fail at the first training iteration that draws it (or silently index another row of a
    soft-target matrix). Raises :class:`DatasetError` naming ``source`` and the first bad one."""
    if labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise DatasetError(f"{source}: label {int(labels[i])} of sample {i} is outside 0..{num_classes - 1} "
                           f"({int(bad.sum())} such labels); the label file is corrupt or belongs to "
                           "another dataset: download it again")


class InMemoryDataset(Dataset):
    """A dataset held in memory as a uint8 tensor (N, C, H, W) and int64 labels (N,).

    Items are ``{"inputs": uint8 (C, H, W), "data_samples": int64 scalar}``; random crop
    and flip run batched in the model's data preprocessor, so indexing is all a loader does.
    A loader fetches a whole batch with one gather (``__getitems__``); with
    ``collate_fn: {type: batch_collate}`` it is used as is.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        classes: class names, ``len(classes)`` = number of classes.
        max_samples: keep only the first ``max_samples`` items (for quick runs and tests).
        device: keep the tensors on this device (e.g. ``cuda``: the whole set resident on
            the GPU, batches gathered there, no host-to-device copy per step). Use it with
            ``num_workers: 0`` and ``pin_memory: false``. Default: host memory.
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str],
                 max_samples: Optional[int] = None, device: Optional[str] = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if max_samples is not None:
            if max_samples <= 0:
                raise ValueError(f"max_samples must be positive, got {max_samples}")
            images, labels = images[:max_samples], labels[:max_samples]
        self.images = images.contiguous()
        self.labels = labels.long()
        check_labels(self.labels, len(classes), getattr(self, "source", None) or type(self).__name__)
        if device is not None:
            dev = torch.device(device)
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"dataset device={device!r} but CUDA is not available: remove "
                                 "`device` to keep the data in host memory")
            self.images, self.labels = self.images.to(dev), self.labels.to(dev)
        self.classes = list(classes)
        self.metainfo = {"classes": self.classes, "num_classes": len(self.classes)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, idx: int) -> dict:
        return {"inputs": self.images[idx], "data_samples": self.labels[idx]}

    def __getitems__(self, indices) -> GatheredBatch:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return GatheredBatch(self.images.index_select(0, idx), self.labels.index_select(0, idx))
