"""Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

Image: ``x~ = lam * x_i + (1 - lam) * x_j``; label: ``y~ = lam * y_i + (1 - lam) * y_j``,
with ``lam ~ Beta(alpha, alpha)`` and ``j = index[i]``. Published default: alpha = 1
(the paper's CIFAR setting and OpenMixup's CIFAR configs); 0.8 in the DeiT recipe, 0.2 in
the paper's ImageNet setting.
"""

import torch
from torch import Tensor

from .base import BaseMixer, MixOutput
from .checks import check_flag
from .kernels import lerp_images


class Mixup(BaseMixer):
    """Linear interpolation of image pairs and their labels.

    Args:
        alpha: Beta(alpha, alpha) concentration, default 1.0.
        inplace: write the mixed batch into ``x`` (as timm does), default False.
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`.

    With ``pairing='reverse'`` this equals ``timm.data.Mixup(mixup_alpha=alpha,
    cutmix_alpha=0, mode=lam_mode)``; with ``pairing='roll'`` it equals
    ``torchvision.transforms.v2.MixUp(alpha=alpha)`` (tests/mixers/test_mixup.py).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, generator=generator)
        self.inplace = check_flag(inplace, "inplace")

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b = x.shape[0]
        index = self.sample_index(b)
        lam: float | Tensor
        if self.lam_mode == "batch":  # one lambda, a Python float: timm's scalar arithmetic
            lam = self.sample_lam_value()
            lam_out = torch.full((b,), lam, dtype=torch.float32, device=x.device)
        else:
            lam = self.sample_lam(index)
            lam_out = lam.to(device=x.device, dtype=torch.float32)
        index = index.to(x.device)
        mixed = lerp_images(x, index, lam, inplace=self.inplace)
        return MixOutput(inputs=mixed, y_a=y, y_b=y.index_select(0, index), lam=lam_out, index=index)
