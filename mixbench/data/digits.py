"""scikit-learn's handwritten digits: mixbench's zero-set-up embedded dataset."""

from __future__ import annotations

import numpy as np
import torch

from mixbench.registry import DATASETS

from .base import InMemoryDataset, check_split

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


@DATASETS.register_module()
class Digits(InMemoryDataset):
    """UCI ML hand-written digits as shipped by scikit-learn (``load_digits``): 1797 images
    of 8x8 pixels with 17 grey levels (0..16), 10 classes.

    Images are scaled to uint8 (``v * 255 // 16``) and upsampled ``scale`` times by pixel
    repetition (default 2 -> 16x16, so a small ResNet has something to downsample).

    Split (fixed, documented): a stratified 75/25 split from
    ``sklearn.model_selection.train_test_split(test_size=0.25, random_state=0, stratify=y)``
    -> 1347 train / 450 test images.
    """

    def __init__(self, split: str = "train", scale: int = 2, max_samples=None, device=None):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        check_split(type(self), split)
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        data = load_digits()
        x = (data.images.astype(np.int64) * 255 // 16).astype(np.uint8)
        idx_train, idx_test = train_test_split(
            np.arange(len(x)),
            test_size=DIGITS_TEST_FRACTION,
            random_state=DIGITS_SPLIT_SEED,
            stratify=data.target,
        )
        idx = idx_train if split == "train" else idx_test
        images = torch.from_numpy(x[idx])[:, None]
        if scale > 1:
            images = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        labels = torch.from_numpy(data.target[idx].astype(np.int64))
        super().__init__(images, labels, [str(c) for c in data.target_names], max_samples, device)
