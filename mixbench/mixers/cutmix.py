"""CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
Localizable Features", ICCV 2019).

Image: ``x~ = M * x_i + (1 - M) * x_j`` where ``1 - M`` is a box of side
``int(H * sqrt(1 - lam)) x int(W * sqrt(1 - lam))`` centred at a uniformly random pixel
and clipped at the border; label: ``y~ = lam' * y_i + (1 - lam') * y_j`` with
``lam' = mean(M)`` (the clipped area, ``correct_lam=True``) or ``lam`` itself.
``lam ~ Beta(alpha, alpha)``. Published defaults: alpha = 1.0 (paper, CIFAR and ImageNet;
the DeiT recipe), alpha = 0.2 in OpenMixup's CIFAR-100 benchmark configs.
"""

import torch

from .boxes import BOX_SPANS, BoxMixer
from .checks import check_choice, check_flag


class CutMix(BoxMixer):
    """Paste a random box of the paired image; label weights follow the box area.

    Args:
        alpha: Beta(alpha, alpha) concentration for lambda, default 1.0.
        correct_lam: lam = exact area of the first image after clipping (default True).
        inplace: paste into ``x`` itself (as timm does), default False.
        box_span: ``exact`` (default: the box is ``cut`` pixels wide before clipping) or
            ``symmetric`` (``c - cut // 2 .. c + cut // 2``, one pixel shorter for odd
            ``cut``: the CutMix paper's code, torchvision and OpenMixup).
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`
            (``elem``/``pair``: one box per sample/pair, vectorised).

    With ``pairing='reverse'`` this equals ``timm.data.Mixup(mixup_alpha=0,
    cutmix_alpha=alpha, mode=lam_mode)``; with ``pairing='roll'`` it equals
    ``torchvision.transforms.v2.CutMix(alpha=alpha)`` for the same lambda and box centre
    (tests/mixers/test_cutmix.py).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        correct_lam: bool = True,
        inplace: bool = False,
        box_span: str = "exact",
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
        self.inplace = check_flag(inplace, "inplace")
        self.box_span = check_choice(box_span, BOX_SPANS, "box_span")
