"""GridMix as OpenMixup implements it: the GridMixup code it links
(github.com/IlyaDobrynin/GridMixup), credited there to Baek et al., "GridMix: Strong
regularization through local context mapping", Pattern Recognition 2021. Baek et al. also
train with a patch-level local-context loss (a label per grid cell); OpenMixup's GridMix,
whose published numbers the benchmark compares against, and this mixer leave it out.

Mask: a crop region of area ``cut_area_ratio * H * W`` and aspect ``cut_aspect_ratio``
(``h / w``) placed uniformly at random holds a regular grid of ``n_holes`` cells across its
width; each cell (``pw = ceil(cut_w / n_holes)`` wide, ``ph = int(pw * hole_aspect_ratio)``
high) has a hole of ``int(pw * sqrt(1 - lam)) x int(ph * sqrt(1 - lam))`` pixels (at least
1, at most the cell side minus 1) at its top-left corner, filled from the paired image.
Image: ``x~ = M * x_i + (1 - M) * x_j``; label: ``lam' = mean(M)`` (``correct_lam``) or
the Beta draw. Published defaults (OpenMixup CIFAR-100): alpha 0.2, n_holes drawn from
{2..6}, hole_aspect_ratio 1, cut_area_ratio ~ U(0.5, 1), cut_aspect_ratio ~ U(0.5, 2).

Differences from OpenMixup's code: a crop taller or wider than the image is clipped to it,
and ``n_holes`` is capped at ``cut_w // 2`` (OpenMixup asserts). With the published ranges
the crop is taller or wider than a 32 px image in 45% of the draws; OpenMixup then places it
at a negative offset ``int((H - cut_h) * u)`` (rounded towards zero) and writes each hole
with Python slices, so a hole above or left of the image reappears at the bottom or right
edge (negative indices count from the end) and a hole straddling the edge disappears.
``openmixup_wrap_bug=True`` reproduces exactly that (tests/mixers/test_gridmix.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MaskMixer, MixOutput
from .checks import check_flag, check_range
from .kernels import blend_pairs
from .sampling import randint_sample, uniform_sample


def python_slices(start: Tensor, end: Tensor, length: int, device) -> Tensor:
    """(n, length) bool: the union over the last dimension of ``start`` / ``end`` (n, k) of
    Python's ``seq[start:end]`` on a sequence of ``length`` (negative bounds count from the
    end, then both are clipped to ``[0, length]``)."""

    def norm(t: Tensor) -> Tensor:
        return torch.where(t < 0, t + length, t).clamp(0, length).to(device)[:, :, None]

    pos = torch.arange(length, device=device)[None, None]
    return ((pos >= norm(start)) & (pos < norm(end))).any(1)


def wrapped_holes(
    origin: Tensor, cut: Tensor, cell: Tensor, hole: Tensor, cells: Tensor, length: int, device
) -> Tensor:
    """(n, length) bool: OpenMixup's hole rows (or columns): hole ``j`` (``j = 0..cells``)
    spans ``min(cell j, cut) .. min(cell j + hole, cut)`` of the crop, written at
    ``origin + ...`` with Python slices (:func:`python_slices`)."""
    j = torch.arange(int(cells.max()) + 1)[None]
    lo = torch.minimum(cell[:, None] * j, cut[:, None])
    hi = torch.minimum(lo + hole[:, None], cut[:, None])
    return python_slices(origin[:, None] + lo, origin[:, None] + hi, length, device)


def grid_masks(
    lam: Tensor,
    n_holes: Tensor,
    hole_aspect: Tensor,
    area: Tensor,
    aspect: Tensor,
    u_y: Tensor,
    u_x: Tensor,
    h: int,
    w: int,
    device,
    openmixup_wrap_bug: bool = False,
) -> Tensor:
    """(n, 1, h, w) float32 weights of the first image (0 in the holes), from per-sample
    parameters (n,) -- vectorised over samples. ``openmixup_wrap_bug``: a crop larger than
    the image is not clipped but placed and written as OpenMixup's code does (module
    docstring)."""
    cut_w = torch.sqrt((h * w * area).floor() / aspect).floor().long().clamp(min=1)
    cut_h = (cut_w * aspect).floor().long().clamp(min=1)
    if not openmixup_wrap_bug:
        cut_w, cut_h = cut_w.clamp(max=w), cut_h.clamp(max=h)
    rounding = torch.trunc if openmixup_wrap_bug else torch.floor  # OpenMixup: int()
    y0 = rounding((h - cut_h) * u_y).long()
    x0 = rounding((w - cut_w) * u_x).long()
    n_holes = torch.minimum(n_holes.long(), (cut_w // 2).clamp(min=1))
    pw = -(-cut_w // n_holes)  # ceil
    ph = (pw * hole_aspect).floor().long().clamp(min=1)
    ratio = torch.sqrt(1 - lam.double())
    hw = torch.minimum((pw * ratio).floor().long().clamp(min=1), pw - 1)
    hh = torch.minimum((ph * ratio).floor().long().clamp(min=1), ph - 1)
    if openmixup_wrap_bug:
        in_rows = wrapped_holes(y0, cut_h, ph, hh, -(-cut_h // ph), h, device)
        in_cols = wrapped_holes(x0, cut_w, pw, hw, n_holes, w, device)
        return (~(in_rows[:, :, None] & in_cols[:, None, :])).float()[:, None]
    params = [t.to(device)[:, None] for t in (y0, x0, cut_h, cut_w, ph, pw, hh, hw)]
    y0, x0, cut_h, cut_w, ph, pw, hh, hw = params
    r = torch.arange(h, device=device)[None] - y0
    c = torch.arange(w, device=device)[None] - x0
    in_rows = (r >= 0) & (r < cut_h) & (r.remainder(ph) < hh)
    in_cols = (c >= 0) & (c < cut_w) & (c.remainder(pw) < hw)
    return (~(in_rows[:, :, None] & in_cols[:, None, :])).float()[:, None]


class GridMix(MaskMixer):
    """Paste a grid of holes from the paired image.

    Args:
        alpha: Beta(alpha, alpha) concentration for lambda, default 0.2.
        n_holes: cells across the crop's width, an int or an inclusive (min, max) range,
            default (2, 6).
        hole_aspect_ratio: cell height / width, a number or (min, max), default 1.
        cut_area_ratio: crop area / image area, a number or (min, max), default (0.5, 1).
        cut_aspect_ratio: crop height / width, a number or (min, max), default (0.5, 2).
        openmixup_wrap_bug: place a crop larger than the image as OpenMixup's code does
            (holes wrap to the opposite edge or vanish; see the module docstring), default
            False (the crop is clipped to the image).
        correct_lam, prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`.
    """

    def __init__(
        self,
        alpha: float = 0.2,
        n_holes=(2, 6),
        hole_aspect_ratio=1.0,
        cut_area_ratio=(0.5, 1.0),
        cut_aspect_ratio=(0.5, 2.0),
        openmixup_wrap_bug: bool = False,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        correct_lam: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__(
            alpha=alpha,
            prob=prob,
            pairing=pairing,
            lam_mode=lam_mode,
            correct_lam=correct_lam,
            generator=generator,
        )
        self.openmixup_wrap_bug = check_flag(openmixup_wrap_bug, "openmixup_wrap_bug")
        self.n_holes = check_range(n_holes, "n_holes", low=1, integer=True)
        self.hole_aspect_ratio = check_range(hole_aspect_ratio, "hole_aspect_ratio", low=1e-3)
        self.cut_area_ratio = check_range(cut_area_ratio, "cut_area_ratio", low=1e-3, high=1.0)
        self.cut_aspect_ratio = check_range(cut_aspect_ratio, "cut_aspect_ratio", low=1e-3)

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b, _, h, w = x.shape
        index = self.sample_index(b)
        lam = self.sample_lam(index)
        g = self.generator

        def draw(n: int) -> Tensor:
            return torch.stack(
                [
                    randint_sample(self.n_holes[0], self.n_holes[1] + 1, n, g).double(),
                    uniform_sample(*self.hole_aspect_ratio, n, g),
                    uniform_sample(*self.cut_area_ratio, n, g),
                    uniform_sample(*self.cut_aspect_ratio, n, g),
                    uniform_sample(0.0, 1.0, n, g),
                    uniform_sample(0.0, 1.0, n, g),
                ],
                1,
            )

        params = self.per_sample(draw, index, expand=False)
        n_holes, hole_aspect, area, aspect, u_y, u_x = params.unbind(1)
        mask = grid_masks(
            lam[: params.shape[0]],
            n_holes,
            hole_aspect,
            area,
            aspect,
            u_y,
            u_x,
            h,
            w,
            x.device,
            self.openmixup_wrap_bug,
        )
        index = index.to(x.device)
        mixed = blend_pairs(x, index, mask, binary=True)
        return self.output(x, y, index, mask, lam, mixed)
