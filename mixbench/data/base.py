"""Dataset base classes and the error raised when data is missing or malformed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

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


class InMemoryDataset(Dataset):
    """A dataset held in memory as a uint8 tensor (N, C, H, W) and int64 labels (N,).

    Items are ``{"inputs": uint8 (C, H, W), "data_samples": int64 scalar}``; random crop
    and flip run batched in the model's data preprocessor, so indexing is all a loader does.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        classes: class names, ``len(classes)`` = number of classes.
        max_samples: keep only the first ``max_samples`` items (for quick runs and tests).
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str],
                 max_samples: Optional[int] = None):
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
        self.classes = list(classes)
        self.metainfo = {"classes": self.classes, "num_classes": len(self.classes)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, idx: int) -> dict:
        return {"inputs": self.images[idx], "data_samples": self.labels[idx]}
