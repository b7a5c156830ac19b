"""Batched augmentations that run inside the model's data preprocessor, on the device; they are
registered in ``BATCH_AUGMENTS`` (a config lists them under
``model.data_preprocessor.batch_augments``), apart from the per-sample ``TRANSFORMS`` of a
dataset's pipeline (:mod:`mixbench.data.pipeline`).

They act on a whole (B, C, H, W) batch at once -- no per-sample Python loop -- so an
in-memory dataset never makes the loader the bottleneck. Random draws are made on the CPU
(global generator) and moved to the batch's device, so CPU and CUDA agree (the noise that
``BatchRandomErasing`` writes is the one exception: it is drawn on the device).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixbench.mixers.boxes import box_inside
from mixbench.registry import BATCH_AUGMENTS

# torchvision's padding-mode names -> torch.nn.functional.pad's.
PADDING_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


@BATCH_AUGMENTS.register_module()
class RandomCropPad:
    """Pad by ``padding`` pixels on each side, then crop a random ``H x W`` window per
    sample (the CIFAR recipe: ``RandomCrop(32, padding=4)``).

    Args:
        padding: pixels added on each side.
        padding_mode: as in torchvision's ``RandomCrop``: ``constant`` (zeros, the CIFAR-10
            recipe), ``reflect`` (mirror without repeating the edge pixel; OpenMixup's
            CIFAR-100 recipe) or ``edge`` (repeat the edge pixel).
    """

    def __init__(self, padding: int = 4, padding_mode: str = "constant"):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}")
        self.padding = int(padding)
        self.padding_mode = padding_mode

    def __call__(self, x: Tensor) -> Tensor:
        if self.padding == 0:
            return x
        b, c, h, w = x.shape
        p = self.padding
        if self.padding_mode == "reflect" and p >= min(h, w):
            raise ValueError(f"reflect padding of {p} px needs images larger than {p} px, got {h}x{w}")
        padded = torch.nn.functional.pad(x, (p, p, p, p), mode=PADDING_MODES[self.padding_mode])
        dy = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # (B, H)
        cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # (B, W)
        bidx = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # B,H,W,C
        return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)

    def __repr__(self) -> str:
        return f"RandomCropPad(padding={self.padding}, padding_mode={self.padding_mode!r})"


@BATCH_AUGMENTS.register_module()
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


@BATCH_AUGMENTS.register_module()
class BatchRandomErasing:
    """Random Erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020) as DeiT
    uses it through timm (``re_prob=0.25, re_mode='pixel', re_count=1``), batched.

    With probability ``prob`` a sample gets one rectangle of area ``s * H * W``,
    ``s ~ U(min_area, max_area)``, and aspect ratio ``r = h / w`` with ``log r ~
    U(log min_aspect, log max_aspect)``; ``h = round(sqrt(s H W r))``, ``w = round(sqrt(s H
    W / r))``. Up to 10 draws are made and the first one that fits (``h < H`` and ``w < W``)
    is used (none fits: the sample is left as is); its top-left corner is uniform over the
    positions that keep it inside the image. The rectangle is filled according to ``mode``:
    ``pixel``: per-pixel, per-channel N(0, 1) noise; ``rand``: one N(0, 1) value per channel;
    ``const``: zeros.

    It runs **after normalisation** (``model.data_preprocessor.normalized_batch_augments``),
    as in timm: N(0, 1) noise is noise with the data's statistics, and zero is the mean.
    Boxes are drawn on the CPU (global generator); the noise is drawn on the batch's device.

    Args:
        prob: probability that a sample is erased (DeiT: 0.25).
        mode: ``pixel`` (DeiT), ``rand`` or ``const``.
        min_area, max_area: range of the erased fraction of the image (0.02, 1/3).
        min_aspect: smallest aspect ratio; the largest is ``1 / min_aspect`` unless
            ``max_aspect`` is given (0.3).
    """

    MODES = ("pixel", "rand", "const")
    ATTEMPTS = 10
    #: runs after normalisation only: the data preprocessor refuses it under ``batch_augments``
    normalized = True

    def __init__(
        self,
        prob: float = 0.25,
        mode: str = "pixel",
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must lie in [0, 1], got {prob}")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if not 0 < min_area <= max_area < 1:
            raise ValueError(f"need 0 < min_area <= max_area < 1, got {min_area}, {max_area}")
        max_aspect = 1 / min_aspect if max_aspect is None else max_aspect
        if not 0 < min_aspect <= max_aspect:
            raise ValueError(f"need 0 < min_aspect <= max_aspect, got {min_aspect}, {max_aspect}")
        self.prob, self.mode = float(prob), mode
        self.min_area, self.max_area = float(min_area), float(max_area)
        self.min_aspect, self.max_aspect = float(min_aspect), float(max_aspect)

    def boxes(self, b: int, h: int, w: int) -> Tensor:
        """(B, 4) int64 ``top, left, height, width`` per sample; height 0 = not erased."""
        area = torch.empty(b, self.ATTEMPTS).uniform_(self.min_area, self.max_area) * (h * w)
        log_r = torch.empty(b, self.ATTEMPTS).uniform_(math.log(self.min_aspect), math.log(self.max_aspect))
        bh = torch.sqrt(area * log_r.exp()).round().long()
        bw = torch.sqrt(area / log_r.exp()).round().long()
        fits = (bh < h) & (bw < w)
        first = fits.long().argmax(1, keepdim=True)  # first attempt that fits
        bh, bw = bh.gather(1, first)[:, 0], bw.gather(1, first)[:, 0]
        keep = fits.any(1) & (torch.rand(b) < self.prob)
        bh, bw = bh * keep, bw * keep
        top = (torch.rand(b) * (h - bh + 1)).long().clamp_max(h - bh)
        left = (torch.rand(b) * (w - bw + 1)).long().clamp_max(w - bw)
        return torch.stack([top, left, bh, bw], 1)

    def __call__(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():
            raise ValueError(
                "BatchRandomErasing runs on normalised float images: list it in "
                "model.data_preprocessor.normalized_batch_augments, not batch_augments"
            )
        b, c, h, w = x.shape
        top, left, bh, bw = self.boxes(b, h, w).to(x.device).unbind(1)
        inside = box_inside((top, top + bh, left, left + bw), h, w, x.device)  # (B, 1, H, W)
        if self.mode == "pixel":
            fill = torch.randn(x.shape, device=x.device, dtype=x.dtype)
        elif self.mode == "rand":
            fill = torch.randn(b, c, 1, 1, device=x.device, dtype=x.dtype)
        else:
            fill = x.new_zeros(())
        return torch.where(inside, fill, x)

    def __repr__(self) -> str:
        return (
            f"BatchRandomErasing(prob={self.prob}, mode={self.mode!r}, area=({self.min_area:.3g}, "
            f"{self.max_area:.3g}), aspect=({self.min_aspect:.3g}, {self.max_aspect:.3g}))"
        )
