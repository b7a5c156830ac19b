"""RegMixup (Pinto, Yang, Lim, Torr & Dokania, "Using Mixup as a Regularizer Can
Surprisingly Improve Accuracy and Out-of-Distribution Robustness", NeurIPS 2022,
arXiv:2206.14502).

Mixup as an extra loss on top of clean training, not in place of it:

    x~ = lam x_i + (1 - lam) x_j,   lam ~ Beta(alpha, alpha)    (the mixer: Mixup, alpha 10-20)
    L  = CE(f(x), y) + eta * [lam CE(f(x~), y_i) + (1 - lam) CE(f(x~), y_j)]      (eta = 1)

The clean and the mixed batch go through the network in *one* forward of the concatenated
2B images (the official code), so BatchNorm sees both. The large alpha (published: 20 on
CIFAR-10, 10 on CIFAR-100) draws lambdas near 1/2: the mixed samples act as a regulariser
that keeps the model uncertain away from the data, which the paper reports as better
accuracy, calibration and out-of-distribution detection than Mixup.

Official code (FrancescoPinto/RegMixup, ``models/regmixup.py``): one mean cross-entropy
over the 2B concatenated samples, i.e. ``(CE_clean + L_mix) / 2``; the paper writes the sum
``CE_clean + eta L_mix``. ``mean_over_both=True`` (default) gives the official value,
``(CE_clean + eta L_mix) / 2``; False gives the paper's sum (twice the gradient). ``eta`` is
the paper's weight (1 in every published run; the official code has none).

Any input mixer can provide ``x~`` (the mixer's own target is used: CutMix, soft targets);
hidden-stage mixers (ManifoldMix, AlignMix) are refused, since the clean half would be
mixed too. The losses are logged as ``loss`` (clean) and ``mix_loss`` (weighted mixed term).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixers.base import MixOutput
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier


@MODELS.register_module()
class RegMixupClassifier(MixupClassifier):
    """Clean cross-entropy plus ``eta`` times the mixer's loss, one forward for both.

    Args:
        eta: weight of the mixed-sample loss, default 1.0 (the paper).
        mean_over_both: halve the total, the official code's mean over the 2B concatenated
            samples (default True); False: the paper's plain sum.
        backbone, head, neck, loss, mixer, data_preprocessor: see :class:`MixupClassifier`;
            ``mixer`` is the mixup that makes ``x~`` (published: Mixup, alpha 10 on
            CIFAR-100, 20 on CIFAR-10). ``loss`` applies to both terms (the clean term is
            the loss of the unmixed batch).
    """

    def __init__(self, backbone: dict, head: dict, eta: float = 1.0, mean_over_both: bool = True, **kwargs):
        super().__init__(backbone=backbone, head=head, **kwargs)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0 or eta == float("inf"):
            raise ValueError(f"RegMixupClassifier.eta must be a finite number >= 0, got {eta!r}")
        if not isinstance(mean_over_both, bool):
            raise ValueError(
                f"RegMixupClassifier.mean_over_both must be true or false, got {mean_over_both!r}"
            )
        self.eta, self.mean_over_both = float(eta), mean_over_both

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        out = self.mixer(inputs, labels, model=self)
        if out.stage_hook is not None:
            raise ValueError(
                f"RegMixup trains on clean and mixed images in one forward; the "
                f"hidden-stage mixer {type(self.mixer).__name__} would mix the "
                "clean half too. Use an input mixer (Mixup, CutMix, ...)"
            )
        b = inputs.shape[0]
        logits = self.logits(torch.cat([inputs, out.inputs.to(inputs.dtype)]))
        scale = 0.5 if self.mean_over_both else 1.0
        clean = self.loss_module(logits[:b], MixOutput.unmixed(inputs, labels))
        mixed = self.loss_module(logits[b:], out)
        return {"loss": scale * clean, "mix_loss": scale * self.eta * mixed}
