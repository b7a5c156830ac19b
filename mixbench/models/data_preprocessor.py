"""Moves uint8 batches to the device, augments them batched, converts and normalizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mixbench.registry import BATCH_AUGMENTS, MODELS, check_type


def build_augments(cfgs: Sequence[dict] | None, key: str) -> list:
    """Build the batch augments (``BATCH_AUGMENTS``) listed under
    ``model.data_preprocessor.<key>``; a per-sample transform there is an error that says it
    belongs in the dataset pipeline."""
    augments = []
    for i, aug in enumerate(cfgs or []):
        aug = dict(aug)
        where = f"model.data_preprocessor.{key}[{i}]"
        check_type(BATCH_AUGMENTS, aug.get("type"), where)
        built = BATCH_AUGMENTS.build(aug)
        if getattr(built, "normalized", False) and key != "normalized_batch_augments":
            raise ValueError(
                f"{where}: {type(built).__name__} runs on normalised float images: list it under "
                "model.data_preprocessor.normalized_batch_augments, not batch_augments"
            )
        augments.append(built)
    return augments


@MODELS.register_module()
class ClassifierDataPreprocessor(BaseDataPreprocessor):
    """``{"inputs": uint8 (B,C,H,W), "data_samples": int64 (B,)}`` -> normalized float inputs
    and labels on the model's device.

    Args:
        mean, std: per-channel statistics in 0..255 units (one value per channel).
        batch_augments: batch augments (registry ``BATCH_AUGMENTS``: ``RandomCropPad``, ``RandomFlip``)
            applied in training only, on the device, before conversion to float.
        normalized_batch_augments: batched transforms applied in training only, after
            normalisation (``BatchRandomErasing``, whose noise is N(0, 1) in normalised space,
            as in timm/DeiT).
        channels_last: return inputs in channels_last memory format.
    """

    def __init__(
        self,
        mean: Sequence[float] = (127.5,),
        std: Sequence[float] = (127.5,),
        batch_augments: Sequence[dict] | None = None,
        normalized_batch_augments: Sequence[dict] | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.batch_augments = build_augments(batch_augments, "batch_augments")
        self.normalized_batch_augments = build_augments(
            normalized_batch_augments, "normalized_batch_augments"
        )
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        device = self.mean.device  # the model's device (moves with it)
        inputs = data["inputs"].to(device, non_blocking=True)
        labels = data["data_samples"]
        labels = torch.as_tensor(labels).to(device, non_blocking=True).long()
        if inputs.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"images have {inputs.shape[1]} channels but the data preprocessor's "
                f"mean/std have {self.mean.shape[1]}: set model.data_preprocessor.mean/std"
            )
        if training:
            for aug in self.batch_augments:
                inputs = aug(inputs)
        inputs = (inputs.float() - self.mean) / self.std
        if training:
            for aug in self.normalized_batch_augments:
                inputs = aug(inputs)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return {"inputs": inputs, "data_samples": labels}
