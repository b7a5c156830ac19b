"""AugMix (Hendrycks, Mu, Cubuk, Zoph, Gilmer & Lakshminarayanan, "AugMix: A Simple Data
Processing Method to Improve Robustness and Uncertainty", ICLR 2020, arXiv:1912.02781;
official code github.com/google-research/augmix: ``augmentations.py``, ``cifar.py``).

An AugMix image mixes ``width`` augmentation chains with the original. Per image::

    w ~ Dirichlet(alpha, ..., alpha)  (width weights),   m ~ Beta(alpha, alpha)
    chain_i = op_d( ... op_1(x))      d ~ U{1, 2, 3} ops (depth), each op drawn uniformly
    x_augmix = (1 - m) x + m sum_i w_i chain_i

and training adds the Jensen-Shannon consistency between the clean image and two AugMix
views of it (cross-entropy on the clean image only)::

    p_c, p_1, p_2 = softmax(f(x)), softmax(f(x_augmix1)), softmax(f(x_augmix2))
    M = clamp((p_c + p_1 + p_2) / 3, 1e-7, 1)
    L = CE(f(x), y) + lambda (KL(p_c || M) + KL(p_1 || M) + KL(p_2 || M)) / 3       lambda = 12

Ops (the official ``augmentations``, on 8-bit images; ``l ~ U(0.1, severity)`` per op, the
geometric ones negated with probability 1/2): autocontrast; equalize; posterize to
``4 - int(0.4 l)`` bits; rotate by ``int(3 l)`` degrees (bilinear, about the centre);
solarize above ``256 - int(25.6 l)``; shear x/y by ``0.03 l``; translate x/y by
``int(l size / 30)`` pixels. ``all_ops`` adds color, contrast, brightness and sharpness with
factor ``0.18 l + 0.1`` (left out by default: they overlap with the CIFAR-C / ImageNet-C
corruptions the paper tests on). Published defaults (official ``cifar.py``; the paper's
CIFAR-10/100 tables): severity 3, width 3, depth random in 1..3, alpha 1, JSD on with
lambda 12; WRN-40-2, SGD lr 0.1 cosine, 100 epochs (ImageNet: severity 1).

Design (where the views are made): the official code makes the views per image in the data
loader (PIL), after the random crop and flip. In mixbench crop and flip run batched on the
device in the data preprocessor, and a method never changes the data config (it is one
``method:`` section). So the views are made here, in the classifier, from the batch the
preprocessor hands over: the batch is taken back to 0..255 with the preprocessor's
``mean``/``std`` (rounded: the images were 8-bit), every op runs batched on the device on
all ``2 * B * width`` chains at once (the op of each chain step is applied to the chains
that drew it: one call per op and step, no loop over samples), the chains are mixed in
floating point (as the official code mixes after ``ToTensor``/``Normalize``: convex weights
commute with normalisation) and normalised again. The clean image, the two views and
their labels go through the network in one forward of ``3B`` images, as the official code.

The ops reproduce Pillow's integer results (``ImageOps``, ``Image.transform`` with bilinear
resampling and zero fill, ``ImageEnhance``): tests check them pixel for pixel against
Pillow. Randomness follows mixbench's convention: every draw is made on the CPU from
``generator`` (or the global generator) and moved to the device, so the views are the same
on CPU and CUDA (the bilinear ops run in float64 for that).

What differs from the official code: the translation unit is the image's own width or
height (the official CIFAR code uses its module constant ``IMAGE_SIZE = 32`` for both axes;
equal for square CIFAR images); views are made after every preprocessor augment, including
``normalized_batch_augments`` such as random erasing (whose values are clipped to 0..255);
the random draws differ in order (not in law) from NumPy's global state.

timm's ``AugMixAugment`` and torchvision's ``AugMix`` differ from the official code (and so
from this) in their levels, op lists, resampling and 8-bit output; where they coincide,
tests replay their draws through ``run_chains`` / ``mix_chains`` and find the same chains
(docs/learnable.md, AugMix: against timm and torchvision).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_flag, check_number, is_int_at_least
from mixbench.mixers.sampling import beta_sample
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier

#: the official default op list (``augmentations.augmentations``)
OPS = (
    "autocontrast",
    "equalize",
    "posterize",
    "rotate",
    "solarize",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
#: ``--all-ops`` adds the ops that overlap with the -C corruptions
ALL_OPS = OPS + ("color", "contrast", "brightness", "sharpness")
#: ops whose magnitude is negated with probability 1/2
SIGNED = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_DEPTH = 3


# -- op parameters: the official int_parameter / float_parameter, in float64 ----------------
def float_parameter(level: Tensor, maxval: float) -> Tensor:
    """``level * maxval / 10`` as Python computes it (a true division: torch divides by a
    Python number through its reciprocal on some devices). Levels stay on the CPU: the ops
    move the parameters they derive to the images' device."""
    return (level * maxval) / torch.full_like(level, 10.0)


def int_parameter(level: Tensor, maxval: float) -> Tensor:
    """``int(level * maxval / 10)`` (levels are positive: the floor)."""
    return torch.floor(float_parameter(level, maxval))


# -- the ops: (n, C, H, W) float images holding the integers 0..255 -> the same ------------
def lut_apply(img: Tensor, lut: Tensor) -> Tensor:
    """Map every value through a per-image, per-channel table ``lut`` (n, C, 256)."""
    idx = img.long().flatten(2)
    return lut.to(img.dtype).gather(2, idx).view_as(img)


def histogram(img: Tensor) -> Tensor:
    """(n, C, 256) int64 counts of each value per image and channel."""
    idx = img.long().flatten(2)
    return torch.zeros(*idx.shape[:2], 256, dtype=torch.long, device=img.device).scatter_add_(
        2, idx, torch.ones_like(idx)
    )


def autocontrast(img: Tensor, _level=None) -> Tensor:
    """``ImageOps.autocontrast``: per channel ``int(v * 255 / (hi - lo) - lo * 255 / (hi - lo))``
    clipped to 0..255; a constant channel is left as is."""
    flat = img.flatten(2).double()
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp_min(1)  # not 255.0 / t: a reciprocal
    offset = -lo * scale
    out = torch.trunc(flat * scale + offset).clamp(0, 255)
    return torch.where(hi > lo, out, flat).to(img.dtype).view_as(img)


def equalize(img: Tensor, _level=None) -> Tensor:
    """``ImageOps.equalize``: per channel, ``step = (N - count of the top value) // 255``,
    ``lut[i] = (step // 2 + #values below i) // step``; identity for one value or step 0."""
    hist = histogram(img)
    top = img.long().flatten(2).amax(2, keepdim=True)
    step = (hist.sum(2, keepdim=True) - hist.gather(2, top)) // 255
    below = hist.cumsum(2) - hist
    lut = torch.div(step // 2 + below, step.clamp_min(1), rounding_mode="floor").clamp(0, 255)
    keep = (step == 0) | ((hist > 0).sum(2, keepdim=True) <= 1)
    identity = torch.arange(256, device=img.device).expand_as(lut)
    return lut_apply(img, torch.where(keep, identity, lut))


def posterize(img: Tensor, level: Tensor) -> Tensor:
    """Keep ``4 - int(level * 4 / 10)`` bits."""
    shift = (2 ** (4 + int_parameter(level, 4))).to(img.device, img.dtype).view(-1, 1, 1, 1)
    return torch.floor(img / shift) * shift


def solarize(img: Tensor, level: Tensor) -> Tensor:
    """Invert values at or above ``256 - int(level * 256 / 10)``."""
    threshold = (256 - int_parameter(level, 256)).to(img.device, img.dtype).view(-1, 1, 1, 1)
    return torch.where(img < threshold, img, 255 - img)


def pil_affine(img: Tensor, coeffs: Tensor) -> Tensor:
    """``Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR)`` per image: output pixel
    ``(x, y)`` reads the input at ``(a X + b Y + c, d X + e Y + f)``, ``X = x + 0.5``,
    ``Y = y + 0.5`` (pixel centres at +0.5); a point outside ``[0, W) x [0, H)`` is 0 (the
    fill), one inside is interpolated between its neighbours (clamped to the border) and
    truncated to an integer, in float64 as Pillow computes it. ``coeffs``: (n, 6) float64."""
    n, c, h, w = img.shape
    a, b, cx, d, e, f = (coeffs[:, k].view(n, 1, 1) for k in range(6))
    xs = (torch.arange(w, device=img.device, dtype=torch.float64) + 0.5).view(1, 1, w)
    ys = (torch.arange(h, device=img.device, dtype=torch.float64) + 0.5).view(1, h, 1)
    xin, yin = a * xs + b * ys + cx, d * xs + e * ys + f  # (n, H, W)
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xin), torch.floor(yin)
    dx, dy = xin - x0, yin - y0
    x0, y0 = x0.long(), y0.long()
    xa, xb = x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1)
    ya, yb = y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1)
    flat = img.double().flatten(2)

    def at(yy, xx):
        return flat.gather(2, (yy * w + xx).flatten(1)[:, None].expand(n, c, -1)).view(n, c, h, w)

    dx, dy = dx[:, None], dy[:, None]
    p, q = at(ya, xa), at(ya, xb)
    v1 = p + (q - p) * dx
    p, q = at(yb, xa), at(yb, xb)
    v2 = torch.where(((y0 + 1 >= 0) & (y0 + 1 < h))[:, None], p + (q - p) * dx, v1)
    v = torch.trunc(v1 + (v2 - v1) * dy)
    return torch.where(inside[:, None], v, 0.0).to(img.dtype)


def rotation_coeffs(degrees: Tensor, h: int, w: int) -> Tensor:
    """``Image.rotate(degrees)``'s affine map (counter-clockwise about ``(W/2, H/2)``), with its
    cosines and sines rounded to 15 digits as Pillow does; the (integer) angles go through
    Python's math so that the map is Pillow's to the last bit."""
    rows = []
    for deg in degrees.tolist():
        t = -math.radians(deg % 360.0)
        a, b = round(math.cos(t), 15), round(math.sin(t), 15)
        d, e = round(-math.sin(t), 15), round(math.cos(t), 15)
        cx, cy = w / 2.0, h / 2.0
        rows.append((a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy))
    return torch.tensor(rows, dtype=torch.float64).view(-1, 6)


def rotate(img: Tensor, level: Tensor) -> Tensor:
    """Rotate by ``int(level * 30 / 10)`` degrees (``level`` signed), bilinear."""
    degrees = torch.sign(level) * int_parameter(level.abs(), 30)
    return pil_affine(img, rotation_coeffs(degrees.cpu(), *img.shape[2:]).to(img.device))


def shear_or_translate(img: Tensor, amount: Tensor, slot: int) -> Tensor:
    """The affine map with ``amount`` in coefficient ``slot`` (1: shear x, 3: shear y,
    2: translate x, 5: translate y) and the identity elsewhere."""
    coeffs = torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64, device=img.device).repeat(len(amount), 1)
    coeffs[:, slot] = amount.to(img.device)
    return pil_affine(img, coeffs)


def shear_x(img, level):
    return shear_or_translate(img, float_parameter(level, 0.3), 1)


def shear_y(img, level):
    return shear_or_translate(img, float_parameter(level, 0.3), 3)


def translate_x(img, level):
    return shear_or_translate(img, torch.sign(level) * int_parameter(level.abs(), img.shape[3] / 3), 2)


def translate_y(img, level):
    return shear_or_translate(img, torch.sign(level) * int_parameter(level.abs(), img.shape[2] / 3), 5)


def grey(img: Tensor) -> Tensor:
    """Pillow's RGB -> L, ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``; a one-channel
    image is its own grey (n, 1, H, W)."""
    if img.shape[1] == 1:
        return img
    w = torch.tensor([19595, 38470, 7471], device=img.device).view(1, 3, 1, 1)
    return torch.div((img.long() * w).sum(1, keepdim=True) + 0x8000, 65536, rounding_mode="floor").to(
        img.dtype
    )


def blend(degenerate: Tensor, img: Tensor, factor: Tensor) -> Tensor:
    """``Image.blend(degenerate, img, factor)``: ``degenerate + factor (img - degenerate)`` in
    float32, truncated and clipped to 0..255 (ImageEnhance's ``enhance``)."""
    factor = factor.float().to(img.device).view(-1, 1, 1, 1)
    out = degenerate.float() + factor * (img.float() - degenerate.float())
    return torch.trunc(out).clamp(0, 255).to(img.dtype)


def enhance_factor(level: Tensor) -> Tensor:
    return float_parameter(level, 1.8) + 0.1


def color(img, level):
    return blend(grey(img).expand_as(img), img, enhance_factor(level))


def contrast(img, level):
    g = grey(img).double()
    mean = g.sum((1, 2, 3), keepdim=True) / torch.full_like(g[:, :1, :1, :1], g[0].numel())
    mean = torch.floor(mean + 0.5).to(img.dtype)
    return blend(mean.expand_as(img), img, enhance_factor(level))


def brightness(img, level):
    return blend(torch.zeros_like(img), img, enhance_factor(level))


def sharpness(img, level):
    """Blend with ``filter(SMOOTH)``: the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13,
    rounded, on the interior; the border pixels are kept (Pillow's 3x3 filter). The integer
    sum ``S`` is exact, and ``S / 13`` is never within 1/26 of a rounding boundary, so the
    rounding is Pillow's on every device."""
    h, w = img.shape[2:]
    inner = img.float()[:, :, 1:-1, 1:-1]
    total = 4 * inner
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            total = total + img.float()[:, :, dy : h - 2 + dy, dx : w - 2 + dx]
    smooth = torch.floor(total / 13 + 0.5).clamp(0, 255)
    degenerate = img.float().clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return blend(degenerate, img, enhance_factor(level))


OP_FUNCTIONS = {
    "autocontrast": autocontrast,
    "equalize": equalize,
    "posterize": posterize,
    "rotate": rotate,
    "solarize": solarize,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
    "color": color,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
}


def augmix_views(
    images: Tensor,
    num_views: int,
    severity: float = 3.0,
    width: int = 3,
    depth: int | None = None,
    alpha: float = 1.0,
    ops=OPS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``num_views`` independent AugMix images of each image, (V, B, C, H, W) float.

    ``images``: (B, C, H, W) float holding the integers 0..255. Every chain of every view
    is one row of a batch of ``V * B * width`` chains; at chain step ``k`` each op is
    applied to the rows that drew it and whose depth exceeds ``k``. All draws are on the
    CPU from ``generator``."""
    b = images.shape[0]
    chains = num_views * b * width
    op_index = torch.randint(0, len(ops), (chains, MAX_DEPTH), generator=generator)
    depths = (
        torch.randint(1, MAX_DEPTH + 1, (chains,), generator=generator)
        if depth is None
        else torch.full((chains,), depth)
    )
    levels = 0.1 + (severity - 0.1) * torch.rand(chains, MAX_DEPTH, dtype=torch.float64, generator=generator)
    negate = torch.rand(chains, MAX_DEPTH, generator=generator) > 0.5
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    weights = torch.from_numpy(np.random.default_rng(seed).dirichlet([alpha] * width, size=num_views * b))
    m = beta_sample(alpha, alpha, num_views * b, generator)
    signed = torch.tensor([name in SIGNED for name in ops])[op_index] & negate
    levels = torch.where(signed, -levels, levels)
    x = images.float()
    starts = x[None, :, None].expand(num_views, b, width, *x.shape[1:]).reshape(chains, *x.shape[1:])
    out = run_chains(starts, ops, op_index, depths, levels).view(num_views, b, width, *x.shape[1:])
    return mix_chains(x[None], out, weights.view(num_views, b, width), m.view(num_views, b))


def run_chains(images: Tensor, ops, op_index: Tensor, depths: Tensor, levels: Tensor) -> Tensor:
    """Chain ``r`` of ``images`` (n, C, H, W), 0..255) applied: ``ops[op_index[r, k]]`` at the
    signed level ``levels[r, k]`` for ``k < depths[r]`` (step ``k`` is one call per op on
    the rows that drew it). ``op_index``, ``levels``: (n, steps) on the CPU; ``depths``: (n,)."""
    out = images.clone()
    for k in range(max(depths.tolist())):
        for o, name in enumerate(ops):
            rows = ((op_index[:, k] == o) & (depths > k)).nonzero()[:, 0]
            if rows.numel() == 0:
                continue
            level = levels[rows, k]
            rows = rows.to(out.device)
            out[rows] = OP_FUNCTIONS[name](out[rows], level)
    return out


def mix_chains(images: Tensor, chains: Tensor, weights: Tensor, m: Tensor) -> Tensor:
    """``(1 - m) x + m sum_i w_i chain_i`` in float32: ``images`` (..., C, H, W), ``chains``
    (..., width, C, H, W), ``weights`` (..., width), ``m`` (...)."""
    w = weights.to(chains.device, torch.float32)[..., None, None, None]
    mix = (w * chains).sum(-4)
    m = m.to(chains.device, torch.float32)[..., None, None, None]
    return (1 - m) * images + m * mix


def jensen_shannon(logits: Tensor, num_views: int) -> Tensor:
    """The official consistency term: the ``num_views`` + 1 chunks of ``logits`` (clean first)
    against their clamped mean distribution ``M``, ``mean_k KL(p_k || M)`` (batch means)."""
    probs = logits.float().softmax(1).chunk(num_views + 1)
    log_mixture = torch.clamp(sum(probs) / len(probs), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)


@MODELS.register_module()
class AugMixClassifier(MixupClassifier):
    """AugMix: cross-entropy on the clean batch plus ``jsd_weight`` times the Jensen-Shannon
    consistency of the clean image and two AugMix views, all in one forward (module
    docstring: the formulas, the ops, the design, the differences from the official code).

    Args:
        backbone, head, neck, loss, data_preprocessor: see :class:`MixupClassifier`; the data
            preprocessor must be ``ClassifierDataPreprocessor`` (its ``mean``/``std`` take
            the batch back to 0..255).
        mixer: must be Vanilla (AugMix trains on the clean labels).
        severity: op strength, levels ``U(0.1, severity)`` (3; ImageNet 1).
        width: chains per AugMix image (3).
        depth: ops per chain; None (default) draws 1..3 per chain.
        alpha: Dirichlet and Beta parameter (1).
        all_ops: add color, contrast, brightness and sharpness (False).
        jsd: the JSD loss with two views (True); False trains on one AugMix view per image
            with the cross-entropy alone (the official ``--no-jsd``).
        jsd_weight: lambda (12).

    ``generator`` (attribute, default None: the global CPU generator) makes the views
    reproducible, as a mixer's.
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        severity: float = 3.0,
        width: int = 3,
        depth: int | None = None,
        alpha: float = 1.0,
        all_ops: bool = False,
        jsd: bool = True,
        jsd_weight: float = 12.0,
        **kwargs,
    ):
        super().__init__(backbone=backbone, head=head, **kwargs)
        self.require_vanilla_mixer("AugMix", "trains on clean labels and makes its own views")
        for name in ("mean", "std"):
            if not isinstance(getattr(self.data_preprocessor, name, None), Tensor):
                raise ValueError(
                    f"AugMix takes the batch back to 0..255 with the data preprocessor's "
                    f"mean and std; {type(self.data_preprocessor).__name__} has no `{name}`: "
                    "use ClassifierDataPreprocessor"
                )
        self.severity = check_number(severity, "AugMixClassifier.severity", low=0.1, strict=True)
        for name, value, low in (("width", width, 1), ("depth", depth, 1)):
            if value is not None and not is_int_at_least(value, low):
                raise ValueError(
                    f"AugMixClassifier.{name} must be an integer >= {low}"
                    f"{' or null (1..3 at random)' if name == 'depth' else ''}, got {value!r}"
                )
        self.width, self.depth = width, depth
        self.alpha = check_number(alpha, "AugMixClassifier.alpha", strict=True)
        self.ops = ALL_OPS if check_flag(all_ops, "AugMixClassifier.all_ops") else OPS
        self.jsd = check_flag(jsd, "AugMixClassifier.jsd")
        self.jsd_weight = check_number(jsd_weight, "AugMixClassifier.jsd_weight")
        self.generator: torch.Generator | None = None

    def views(self, inputs: Tensor, num_views: int) -> Tensor:
        """(V, B, C, H, W) normalised AugMix views of a normalised batch."""
        mean, std = self.data_preprocessor.mean.float(), self.data_preprocessor.std.float()
        if inputs.shape[1] != mean.shape[1]:
            raise ValueError(
                f"images have {inputs.shape[1]} channels but the data preprocessor's mean/std "
                f"have {mean.shape[1]}"
            )
        if self.ops is ALL_OPS and inputs.shape[1] not in (1, 3):
            raise ValueError(
                f"all_ops' color and contrast need grey or RGB images, got {inputs.shape[1]} channels"
            )
        images = (inputs.float() * std + mean).round().clamp(0, 255)
        views = augmix_views(
            images, num_views, self.severity, self.width, self.depth, self.alpha, self.ops, self.generator
        )
        return ((views - mean) / std).to(inputs.dtype)

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        clean = MixOutput.unmixed(inputs, labels)
        if not self.jsd:
            return {"loss": self.loss_module(self.logits(self.views(inputs, 1)[0]), clean)}
        views = self.views(inputs, 2)
        logits = self.logits(torch.cat([inputs, *views]))
        ce = self.loss_module(logits[: inputs.shape[0]], clean)
        return {"loss": ce, "jsd_loss": self.jsd_weight * jensen_shannon(logits, 2)}
