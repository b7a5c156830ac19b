"""Decoupled mixup loss (DecoupleMix).

Liu, Li, Wang, Lei, Wu, Tan, Li, "Harnessing Hard Mixed Samples with Decoupled
Regularizer", NeurIPS 2023 (arXiv:2203.10761).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.registry import MODELS

from .mixed_ce import MixedCrossEntropy

ETA_MODES = ("both", "less", "more")


def decoupled_nll(logits: Tensor, target: Tensor, removed: Tensor) -> Tensor:
    """Per-sample ``-log softmax_{c != removed}(z)_target``: the cross-entropy of class
    ``target`` under a softmax from which class ``removed`` is taken out (the paper's
    decoupled softmax ``H(z; y_a, y_b)``)."""
    z = logits.float()
    without = z.scatter(1, removed[:, None], float("-inf"))
    return torch.logsumexp(without, dim=1) - z.gather(1, target[:, None])[:, 0]


@MODELS.register_module()
class DecoupledMixupLoss(MixedCrossEntropy):
    """Mixup cross-entropy plus the decoupled regularizer of DecoupleMix.

    For a sample mixed from classes ``a = y_a`` and ``b = y_b`` with weight ``lam`` of ``a``
    (logits ``z``), the loss is::

        L = -[lam log s(z)_a + (1 - lam) log s(z)_b]                  # mixup CE
            - w_a log( e^{z_a} / sum_{c != b} e^{z_c} )               # a, with b removed
            - w_b log( e^{z_b} / sum_{c != a} e^{z_c} )               # b, with a removed

    (``s`` the softmax), averaged over the batch. Removing the other mixed class from the
    softmax lets each component be predicted confidently on its own, which keeps hard
    (small-lambda) mixed samples useful. The weights are ``w_a = eta * lam ** lam_power``
    and ``w_b = eta * (1 - lam) ** lam_power`` in mode ``both``; the paper's plain
    ``eta`` weighting is ``lam_power = 0``. Mode ``less`` keeps only the weight of the
    minority component (``w_a`` when ``lam < thr``, else ``w_b``); ``more`` only the
    majority one (OpenMixup's ``eta_weight`` modes).

    The regularizer is zero for unmixed samples (``y_a == y_b``, ``lam`` in {0, 1}): with
    one class there is nothing to decouple.

    OpenMixup's implementation (``soft_mix_cross_entropy`` in
    openmixup/models/losses/cross_entropy_loss.py, weights from ``ClsMixupHead.loss``)
    computes the weights for ``(y_a, y_b)`` but applies them in the order of the class
    indices of the batch's first mixed sample (the label values it finds in that sample's
    row, ``label[0, label[0] > eps]``): whenever that sample has ``y_a > y_b`` -- half of the
    batches -- every sample's two weights are swapped, so mode ``less`` regularises the
    majority class and ``more`` the minority one. It also drops the regularizer for a batch
    whose first mixed sample has ``lam == 0.5`` exactly (two equal label values cannot be
    told apart). ``openmixup_eta_order_bug=True`` reproduces both for a batch-shared lambda
    (OpenMixup's only case); by default the weights follow the definition above.

    Args:
        eta: weight of the regularizer. Published default 0.1 (OpenMixup's CIFAR-100
            DecoupleMix configs for Mixup, CutMix, FMix, SaliencyMix, ResizeMix).
        mode: ``both`` (default; Mixup configs), ``less`` (CutMix-style configs) or ``more``.
        thr: lambda threshold of modes ``less``/``more``, default 0.5.
        lam_power: exponent of lambda in the weights: 1.0 (default, Mixup configs), 0.5
            (CutMix configs), 0 (the paper's constant eta).
        label_smoothing: applied to the mixup CE term only (default 0).
        openmixup_eta_order_bug: order the two weights as OpenMixup's code does (see
            above), default False.

    Mixes that carry ``soft_targets`` (more than two classes per sample) are refused.
    """

    def __init__(
        self,
        eta: float = 0.1,
        mode: str = "both",
        thr: float = 0.5,
        lam_power: float = 1.0,
        label_smoothing: float = 0.0,
        openmixup_eta_order_bug: bool = False,
    ):
        super().__init__(label_smoothing=label_smoothing)
        if not isinstance(openmixup_eta_order_bug, bool):
            raise ValueError(
                "DecoupledMixupLoss.openmixup_eta_order_bug must be true or false, "
                f"got {openmixup_eta_order_bug!r}"
            )
        self.openmixup_eta_order_bug = openmixup_eta_order_bug
        if mode not in ETA_MODES:
            raise ValueError(f"DecoupledMixupLoss.mode must be one of {ETA_MODES}, got {mode!r}")
        if not float(eta) >= 0:
            raise ValueError(f"DecoupledMixupLoss.eta must be >= 0, got {eta!r}")
        if not 0.0 <= float(thr) <= 1.0:
            raise ValueError(f"DecoupledMixupLoss.thr is a lambda threshold in [0, 1], got {thr!r}")
        if not float(lam_power) >= 0:
            raise ValueError(f"DecoupledMixupLoss.lam_power must be >= 0, got {lam_power!r}")
        self.eta, self.mode, self.thr = float(eta), mode, float(thr)
        self.lam_power = float(lam_power)

    def weights(self, lam: Tensor) -> tuple:
        """``(w_a, w_b)``, each (B,), the regularizer weights for ``lam`` (weight of y_a)."""
        w_a = self.eta * lam.pow(self.lam_power)
        w_b = self.eta * (1 - lam).pow(self.lam_power)
        if self.mode != "both":
            keep_a = lam < self.thr if self.mode == "less" else lam >= self.thr
            w_a, w_b = w_a * keep_a, w_b * ~keep_a
        return w_a, w_b

    def regularizer(self, logits: Tensor, mix) -> Tensor:
        """Per-sample decoupled regularizer ``w_a * nll_a + w_b * nll_b`` (B,)."""
        lam = mix.lam.float()
        mixed = (mix.y_a != mix.y_b) & (lam > 0) & (lam < 1)
        w_a, w_b = self.weights(lam)
        if self.openmixup_eta_order_bug:
            w_a, w_b = self.openmixup_order(w_a, w_b, mix, lam, mixed)
        reg = w_a * decoupled_nll(logits, mix.y_a, mix.y_b) + w_b * decoupled_nll(logits, mix.y_b, mix.y_a)
        return torch.where(mixed, reg, torch.zeros_like(reg))

    @staticmethod
    def openmixup_order(w_a: Tensor, w_b: Tensor, mix, lam: Tensor, mixed: Tensor) -> tuple:
        """OpenMixup's weights: swapped for the whole batch when its first mixed sample has
        ``y_a > y_b``, zero when that sample has ``lam == 0.5``."""
        first = mixed.nonzero()
        if first.numel() == 0:
            return w_a, w_b
        i = first[0, 0]
        swap = mix.y_a[i] > mix.y_b[i]
        keep = (lam[i] != 0.5).to(w_a.dtype)
        return (torch.where(swap, w_b, w_a) * keep, torch.where(swap, w_a, w_b) * keep)

    def forward(self, logits: Tensor, mix) -> Tensor:
        if mix.soft_targets is not None:
            raise ValueError(
                "DecoupledMixupLoss needs a two-class mix (y_a, y_b, lam); this mixer "
                "returned soft_targets (more than two classes per sample). Use "
                "MixedCrossEntropy with it, or a pairwise mixer (Mixup, CutMix, ...)"
            )
        mixup_ce = super().forward(logits, mix)
        if self.eta == 0:
            return mixup_ce
        return mixup_ce + self.regularizer(logits, mix).mean()
