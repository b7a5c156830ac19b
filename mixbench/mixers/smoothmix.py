"""SmoothMix (Lee et al., "SmoothMix: a Simple Yet Effective Data Augmentation to Train
Robust Classifiers", CVPR Workshops 2020).

Image: ``x~ = M * x_i + (1 - M) * x_j`` with a smooth mask ``1 - M = G``, a Gaussian bump
``G(r, c) = exp(-((r - cy)^2 + (c - cx)^2) / (2 sigma^2))`` centred at a uniformly random
pixel with ``sigma = s * H``, ``s ~ U(0.25, 0.5)`` (OpenMixup's setting); label:
``y~ = lam * y_i + (1 - lam) * y_j`` with ``lam = mean(M)``, the first image's pixel weight.

Lambda is the mask's mean, not a Beta draw: ``alpha`` is accepted so that OpenMixup's
configs (alpha 0.2) build, but the method does not use it.

OpenMixup's code (openmixup/models/augments/smoothmix.py) differs in two ways, both
available as options:

* a bug in the label: it returns ``mean(G)`` as the weight of ``y_i`` although ``G``
  weights ``x_j`` (``x~ = x_i (1 - G) + x_j G``), so the label favours the class with the
  smaller share of the pixels. Here the label follows the pixels;
  ``openmixup_label_bug=True`` reproduces OpenMixup (``lam = 1 - mean(M)``);
* its Gaussian is centred half a pixel up and left of a uniformly drawn pixel (a 2H x 2H
  grid rolled by the draw and cropped around its centre ``H - 0.5``): ``centre_shift=-0.5``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MaskMixer, MixOutput
from .checks import check_flag, check_range
from .kernels import blend_pairs
from .sampling import randint_sample, uniform_sample


def gaussian_masks(cy: Tensor, cx: Tensor, sigma_y: Tensor, sigma_x: Tensor, h: int, w: int) -> Tensor:
    """(n, 1, h, w) float32 weights ``1 - G`` of the first image, computed on the CPU in
    float64 (so that CPU and CUDA runs share the very same mask)."""
    rows = torch.arange(h, dtype=torch.float64)[None, :, None]
    cols = torch.arange(w, dtype=torch.float64)[None, None, :]
    dist = (rows - cy.double()[:, None, None]) ** 2 / (2 * sigma_y.double()[:, None, None] ** 2) + (
        cols - cx.double()[:, None, None]
    ) ** 2 / (2 * sigma_x.double()[:, None, None] ** 2)
    return (1 - torch.exp(-dist)).float()[:, None]


class SmoothMix(MaskMixer):
    """Blend in a Gaussian region of the paired image; label weights follow the mask mean.

    Args:
        alpha: accepted for config compatibility (OpenMixup: 0.2); not used.
        sigma_range: ``sigma / H`` drawn uniformly from this range, default (0.25, 0.5).
        openmixup_label_bug: give ``y_i`` the weight of ``x_j``'s pixels, ``1 - mean(M)``,
            as OpenMixup's code does (a bug); default False (``lam = mean(M)``).
        centre_shift: added to the drawn centre row and column, default 0; OpenMixup's
            code: -0.5.
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`
            (``batch``: one mask per batch, as published; ``elem``/``pair``: per sample/pair).
    """

    def __init__(
        self,
        alpha: float = 0.2,
        sigma_range=(0.25, 0.5),
        openmixup_label_bug: bool = False,
        centre_shift: float = 0.0,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        super().__init__(
            alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, correct_lam=True, generator=generator
        )
        self.sigma_range = check_range(sigma_range, "sigma_range", low=1e-6)
        self.openmixup_label_bug = check_flag(openmixup_label_bug, "openmixup_label_bug")
        self.centre_shift = check_range(centre_shift, "centre_shift", low=-1.0, high=1.0)[0]

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b, _, h, w = x.shape
        index = self.sample_index(b)
        g = self.generator

        def draw(n: int) -> Tensor:
            return torch.stack(
                [
                    randint_sample(0, h, n, g).double(),
                    randint_sample(0, w, n, g).double(),
                    uniform_sample(*self.sigma_range, n, g),
                ],
                1,
            )

        params = self.per_sample(draw, index, expand=False)
        cy, cx, s = params.unbind(1)
        mask = gaussian_masks(cy + self.centre_shift, cx + self.centre_shift, s * h, s * h, h, w).to(x.device)
        index = index.to(x.device)
        mixed = blend_pairs(x, index, mask)
        out = self.output(x, y, index, mask, mask.mean((1, 2, 3)), mixed)
        if self.openmixup_label_bug:  # OpenMixup: y_i weighted by x_j's pixel share
            out.lam = 1 - out.lam
        return out
