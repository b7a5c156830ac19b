"""The RandAugment policies of the published recipes, as per-sample transforms on uint8
(C, H, W) tensors (they run in the loader workers, in a dataset's ``pipeline``).

RandAugment: Cubuk et al., "RandAugment: Practical automated data augmentation with a
reduced search space", CVPR Workshops 2020.

- ``FixMatchRandAugment``: OpenMixup's CIFAR-100 recipe for DeiT-S, Swin-T (224 px) and
  ConvNeXt-T (32 px), ``'rand-m7-mstd0.5'`` over the 14-op list of FixMatch (Sohn et al.,
  "FixMatch", NeurIPS 2020), with the sampling of OpenMixup's (mmcls's) ``RandAugment``.
- ``TimmRandAugment``: timm's RandAugment from a config string, e.g. DeiT's ImageNet recipe
  ``'rand-m9-mstd0.5-inc1'`` (Touvron et al., ICML 2021), with the hyper-parameters that
  ``timm.data.create_transform`` gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from mixbench.registry import TRANSFORMS

_PIL_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _resample(interpolation) -> int:
    name = interpolation.value if isinstance(interpolation, InterpolationMode) else str(interpolation)
    if name.lower() not in _PIL_RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_PIL_RESAMPLE)}, got {interpolation!r}")
    return _PIL_RESAMPLE[name.lower()]


def to_pil(img: Tensor) -> Image.Image:
    if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a uint8 RGB image (3, H, W), got {img.dtype} {tuple(img.shape)}")
    return Image.fromarray(img.permute(1, 2, 0).contiguous().cpu().numpy())


def from_pil(pil: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


# -- the ops: img uint8 (3, H, W) -> uint8 (3, H, W) --------------------------------------
def blend(img: Tensor, degenerate: Tensor, factor: float) -> Tensor:
    """``factor * img + (1 - factor) * degenerate``, clipped to 0..255 and truncated to
    uint8 (PIL's ImageEnhance and mmcv's ``adjust_*``)."""
    out = img.float() * factor + degenerate.float() * (1 - factor)
    return out.clamp(0, 255).to(torch.uint8)


def luma(img: Tensor) -> Tensor:
    """ITU-R 601-2 luma, rounded to uint8 (PIL's RGB -> L), shape (1, H, W)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=img.device).view(3, 1, 1)
    return (img.float() * w).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def auto_contrast(img: Tensor, _=None) -> Tensor:
    """Stretch each channel linearly so that its darkest pixel is 0 and its lightest 255
    (a constant channel is left as is)."""
    flat = img.flatten(1).float()
    lo, hi = flat.min(1).values.view(3, 1, 1), flat.max(1).values.view(3, 1, 1)
    scale = torch.where(hi > lo, 255.0 / (hi - lo).clamp_min(1), torch.ones_like(hi))
    lo = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return ((img.float() - lo) * scale).clamp(0, 255).to(torch.uint8)


def brightness(img: Tensor, v: float) -> Tensor:
    """Blend with black by factor ``1 + v``."""
    return blend(img, torch.zeros_like(img), 1 + v)


def color(img: Tensor, v: float) -> Tensor:
    """Blend with the image's grey version by factor ``1 + v`` (saturation)."""
    return blend(img, luma(img).expand_as(img), 1 + v)


def contrast(img: Tensor, v: float) -> Tensor:
    """Blend with a uniform image at the rounded mean grey level by factor ``1 + v``."""
    return blend(img, torch.full_like(img, int(luma(img).float().mean().round())), 1 + v)


def equalize(img: Tensor, _=None) -> Tensor:
    """Histogram equalisation per channel (PIL's ``ImageOps.equalize``)."""
    return F.equalize(img)


def identity(img: Tensor, _=None) -> Tensor:
    return img


def posterize(img: Tensor, bits: float) -> Tensor:
    """Keep the ``int(bits)`` most significant bits of every value."""
    shift = 8 - int(bits)
    return (img >> shift) << shift


def sharpness(img: Tensor, v: float) -> Tensor:
    """Blend with the image smoothed by the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13
    (PIL's SMOOTH; borders mirrored as OpenCV's ``filter2D`` does) by factor ``1 + v``."""
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=img.device)
    kernel = kernel.div(13).expand(3, 1, 3, 3)
    padded = torch.nn.functional.pad(img.float()[None], (1, 1, 1, 1), mode="reflect")
    smooth = torch.nn.functional.conv2d(padded, kernel, groups=3)[0].round().clamp(0, 255)
    return blend(img, smooth, 1 + v)


def solarize(img: Tensor, threshold: float) -> Tensor:
    """Invert every value at or above ``threshold``."""
    return torch.where(img < threshold, img, 255 - img)


def affine(img: Tensor, matrix: Sequence[float], fill: Sequence[int], resample: int) -> Tensor:
    """Warp with the inverse map ``matrix`` = (a, b, c, d, e, f): output pixel (x, y) takes
    the input at (a x + b y + c, d x + e y + f), in pixel-index coordinates (the centre of the
    top-left pixel is (0, 0), as in OpenCV); outside the image: ``fill``."""
    a, b, c, d, e, f = matrix
    # PIL puts pixel centres at +0.5: shift the translation so that index coordinates map.
    c_pil = c + 0.5 - 0.5 * (a + b)
    f_pil = f + 0.5 - 0.5 * (d + e)
    pil = to_pil(img).transform(
        (img.shape[2], img.shape[1]),
        Image.AFFINE,
        (a, b, c_pil, d, e, f_pil),
        resample=resample,
        fillcolor=tuple(fill),
    )
    return from_pil(pil).to(img.device)


def rotate(img: Tensor, degrees: float, fill, resample) -> Tensor:
    """Rotate clockwise by ``degrees`` about the image centre."""
    t = np.deg2rad(degrees)
    cy, cx = (img.shape[1] - 1) / 2, (img.shape[2] - 1) / 2
    cos, sin = float(np.cos(t)), float(np.sin(t))
    # inverse of a clockwise rotation (y axis pointing down) is a counter-clockwise one
    return affine(
        img, (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy), fill, resample
    )


def shear(img: Tensor, s: float, fill, resample, direction: str) -> Tensor:
    """Horizontal: output (x, y) = input (x - s y, y) (rows slide right as y grows, about the
    top-left corner); vertical: output (x, y) = input (x, y - s x)."""
    m = (1, -s, 0, 0, 1, 0) if direction == "horizontal" else (1, 0, 0, -s, 1, 0)
    return affine(img, m, fill, resample)


def translate(img: Tensor, frac: float, fill, resample, direction: str) -> Tensor:
    """Shift right (horizontal) or down (vertical) by ``frac`` of the width / height."""
    if direction == "horizontal":
        return affine(img, (1, 0, -frac * img.shape[2], 0, 1, 0), fill, resample)
    return affine(img, (1, 0, 0, 0, 1, -frac * img.shape[1]), fill, resample)


# name: (function, magnitude range (value at level 0, value at level total) or None,
#        extra keyword arguments, whether the value is negated with probability negate_prob,
#        whether the op is geometric (takes fill and resample))
FIXMATCH_OPS = {
    "AutoContrast": (auto_contrast, None, {}, False, False),
    "Brightness": (brightness, (0.05, 0.95), {}, True, False),
    "ColorTransform": (color, (0.05, 0.95), {}, True, False),
    "Contrast": (contrast, (0.05, 0.95), {}, True, False),
    "Equalize": (equalize, None, {}, False, False),
    "Identity": (identity, None, {}, False, False),
    "Posterize": (posterize, (4, 8), {}, False, False),
    "Rotate": (rotate, (0, 30), {}, True, True),
    "Sharpness": (sharpness, (0.05, 0.95), {}, True, False),
    "ShearX": (shear, (0, 0.3), {"direction": "horizontal"}, True, True),
    "ShearY": (shear, (0, 0.3), {"direction": "vertical"}, True, True),
    "Solarize": (solarize, (256, 0), {}, False, False),
    "TranslateX": (translate, (0, 0.3), {"direction": "horizontal"}, True, True),
    "TranslateY": (translate, (0, 0.3), {"direction": "vertical"}, True, True),
}


@TRANSFORMS.register_module()
class FixMatchRandAugment:
    """RandAugment over FixMatch's 14 ops, sampled as OpenMixup's CIFAR-100 recipes do
    (``configs/classification/_base_/datasets/cifar100/sz224_randaug_bs100.py`` and
    ``sz32_randaug_bs100.py``: ``num_policies=2, magnitude_level=7, magnitude_std=0.5,
    total_level=10, pad_val=[114, 123, 125], interpolation='bicubic'``).

    Per image: draw ``num_ops`` ops uniformly with replacement; for each, draw a level
    ``m ~ N(magnitude, magnitude_std)`` clipped to [0, total_level] and map it linearly to
    the op's range, ``value = lo + (hi - lo) * m / total_level``; apply the op with
    probability ``op_prob``, negating the value with probability ``negate_prob`` for the
    signed ops (Brightness, ColorTransform, Contrast, Sharpness: factor ``1 + value``;
    Rotate; Shear; Translate). Ops and ranges (value at level 0 -> at level 10):

    ========================  =============================================================
    AutoContrast              stretch each channel to 0..255
    Brightness                factor 1 +- (0.05 -> 0.95)
    ColorTransform            saturation factor 1 +- (0.05 -> 0.95)
    Contrast                  factor 1 +- (0.05 -> 0.95) about the mean grey level
    Equalize                  histogram equalisation per channel
    Identity                  nothing
    Posterize                 keep int(4 -> 8) bits
    Rotate                    +- (0 -> 30) degrees, about the centre
    Sharpness                 factor 1 +- (0.05 -> 0.95) against the SMOOTH-filtered image
    ShearX, ShearY            +- (0 -> 0.3), about the top-left corner
    Solarize                  invert values >= (256 -> 0)
    TranslateX, TranslateY    +- (0 -> 0.3) of the width / height
    ========================  =============================================================

    At the published level 7 (before noise): factors 1 +- 0.68, 6 bits, 21 degrees, shear
    0.21, translation 21 %, solarize threshold 76.8. Geometric ops fill with ``fill`` and
    resample with ``interpolation``. Grey levels use RGB luma weights (PIL's); OpenMixup's
    mmcv calls weight the channels in BGR order on its RGB arrays, a quirk not reproduced.

    Args:
        num_ops: ops per image (2).
        magnitude: mean level (7).
        magnitude_std: std of the level noise (0.5); 0 uses ``magnitude`` as is.
        total_level: the level at which an op reaches the end of its range (10).
        op_prob: probability that a drawn op is applied (0.5, mmcv's default).
        negate_prob: probability that a signed op's value is negated (0.5).
        fill: RGB fill of geometric ops ([114, 123, 125]).
        interpolation: ``bicubic`` (published), ``bilinear`` or ``nearest``.
        ops: restrict the list to these op names (tests, ablations); default all 14.
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 7,
        magnitude_std: float = 0.5,
        total_level: float = 10,
        op_prob: float = 0.5,
        negate_prob: float = 0.5,
        fill: Sequence[int] = (114, 123, 125),
        interpolation="bicubic",
        ops: Sequence[str] | None = None,
    ):
        if num_ops < 1:
            raise ValueError(f"num_ops must be >= 1, got {num_ops}")
        if total_level <= 0 or not 0 <= magnitude <= total_level:
            raise ValueError(
                f"need 0 <= magnitude <= total_level and total_level > 0, got "
                f"magnitude={magnitude}, total_level={total_level}"
            )
        if magnitude_std < 0:
            raise ValueError(f"magnitude_std must be >= 0, got {magnitude_std}")
        for name, p in (("op_prob", op_prob), ("negate_prob", negate_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if len(fill) != 3 or not all(0 <= int(v) <= 255 for v in fill):
            raise ValueError(f"fill must be three values in 0..255 (R, G, B), got {list(fill)}")
        ops = list(FIXMATCH_OPS) if ops is None else list(ops)
        unknown = [o for o in ops if o not in FIXMATCH_OPS]
        if unknown or not ops:
            raise ValueError(f"unknown or no ops {unknown}; choose from {list(FIXMATCH_OPS)}")
        self.num_ops, self.magnitude = int(num_ops), float(magnitude)
        self.magnitude_std, self.total_level = float(magnitude_std), float(total_level)
        self.op_prob, self.negate_prob = float(op_prob), float(negate_prob)
        self.fill = tuple(int(v) for v in fill)
        self.resample = _resample(interpolation)
        self.ops = ops

    def value(self, name: str, level: float) -> float | None:
        """The op's argument at ``level`` (before negation); None for ops without one."""
        rng = FIXMATCH_OPS[name][1]
        if rng is None:
            return None
        lo, hi = rng
        return lo + (hi - lo) * level / self.total_level

    def apply(self, img: Tensor, name: str, value: float | None) -> Tensor:
        """Apply op ``name`` with argument ``value`` (no randomness)."""
        fn, _, kwargs, _, geometric = FIXMATCH_OPS[name]
        if geometric:
            return fn(img, value, self.fill, self.resample, **kwargs)
        return fn(img, value)

    def __call__(self, img: Tensor) -> Tensor:
        for k in torch.randint(0, len(self.ops), (self.num_ops,)).tolist():
            name = self.ops[k]
            level = self.magnitude
            if self.magnitude_std > 0:
                level = min(self.total_level, max(0.0, float(torch.normal(level, self.magnitude_std, ()))))
            value = self.value(name, level)
            if torch.rand(()) >= self.op_prob:
                continue
            if FIXMATCH_OPS[name][3] and torch.rand(()) < self.negate_prob:
                value = -value
            img = self.apply(img, name, value)
        return img

    def __repr__(self) -> str:
        return (
            f"FixMatchRandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"magnitude_std={self.magnitude_std}, total_level={self.total_level}, "
            f"op_prob={self.op_prob}, fill={self.fill}, ops={len(self.ops)})"
        )


def posterize_pil(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, where keeping 0 bits gives a black image (as TensorFlow's and older
    Pillow's posterize did). Recent Pillow rejects 0 bits, and timm's 'inc1' policy asks for
    0 bits at level 10 (``4 - int(level * 4 / 10)``), so ~0.15 % of images would raise."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


@TRANSFORMS.register_module()
class TimmRandAugment:
    """timm's RandAugment (``timm.data.auto_augment.rand_augment_transform``) on uint8
    tensors, configured as ``timm.data.create_transform`` configures it for training:
    ``translate_const = int(0.45 * img_size)``, fill = ``round(255 * mean)``, the given
    interpolation. DeiT's ImageNet recipe: ``config: rand-m9-mstd0.5-inc1`` (2 ops from
    the 15 "increasing" ops, each applied with probability 0.5, level ~ N(9, 0.5)).
    Posterize keeping 0 bits gives black (see :func:`posterize_pil`).

    Args:
        config: timm's RandAugment string (``rand-m9-mstd0.5-inc1``).
        img_size: training image size (224), sets the translation unit.
        mean: normalisation mean in 0..1 (ImageNet's), sets the fill.
        interpolation: ``bicubic`` (DeiT), ``bilinear`` or ``nearest``.
    """

    def __init__(
        self,
        config: str = "rand-m9-mstd0.5-inc1",
        img_size: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        interpolation="bicubic",
    ):
        from timm.data import auto_augment

        if not config.startswith("rand"):
            raise ValueError(
                f"config must be a timm RandAugment string such as 'rand-m9-mstd0.5-inc1', got {config!r}"
            )
        self.config = config
        self.hparams = {
            "translate_const": int(img_size * 0.45),
            "img_mean": tuple(min(255, round(255 * x)) for x in mean),
            "interpolation": _resample(interpolation),
        }
        self.transform: Callable = auto_augment.rand_augment_transform(config, dict(self.hparams))
        for op in self.transform.ops:
            if op.aug_fn is auto_augment.posterize:
                op.aug_fn = posterize_pil

    def __call__(self, img: Tensor) -> Tensor:
        return from_pil(self.transform(to_pil(img))).to(img.device)

    def __repr__(self) -> str:
        return f"TimmRandAugment({self.config!r}, hparams={self.hparams})"
