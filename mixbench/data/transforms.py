"""Batched augmentations that run inside the model's data preprocessor, on the device.

They act on a whole (B, C, H, W) batch at once -- no per-sample Python loop -- so an
in-memory dataset never makes the loader the bottleneck. Random draws are made on the CPU
(global generator) and moved to the batch's device, so CPU and CUDA agree.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mixbench.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomCropPad:
    """Zero-pad by ``padding`` pixels on each side, then crop a random ``H x W`` window per
    sample (the CIFAR recipe: ``RandomCrop(32, padding=4)``)."""

    def __init__(self, padding: int = 4):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x: Tensor) -> Tensor:
        if self.padding == 0:
            return x
        b, c, h, w = x.shape
        p = self.padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (B, H)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (B, W)
        bidx = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # B,H,W,C
        return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)

    def __repr__(self) -> str:
        return f"RandomCropPad(padding={self.padding})"


@TRANSFORMS.register_module()
class RandomFlip:
    """Flip each sample horizontally with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must lie in [0, 1], got {prob}")
        self.prob = float(prob)

    def __call__(self, x: Tensor) -> Tensor:
        flip = (torch.rand(x.shape[0]) < self.prob).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob})"
