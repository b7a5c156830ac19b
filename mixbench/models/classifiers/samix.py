"""SAMix (Li, Liu, Wang, Wu, Liu, Li, "Boosting Discriminative Visual Representation Learning
with Scenario-Agnostic Mixup", arXiv:2111.15454): AutoMix whose Mix Block ("Mixer") encodes
lambda in its features, attends over the concatenated pair, and is trained with the
eta-balanced mixup loss and an L1 + variance mask loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.registry import MODELS

from .automix import AutoMixClassifier


@MODELS.register_module()
class EtaBalancedMixupLoss(nn.Module):
    """SAMix's eta-balanced mixup loss: the mixup cross-entropy split into the *local*
    smoothness between the two mixed classes and the *global* discrimination of the pair
    from the other classes, the global part weighted by ``eta``.

    For a sample mixed from classes ``a = y_a``, ``b = y_b`` (``a != b``) with weight
    ``lam`` of ``a``, logits ``z`` and ``p = softmax(z)``::

        local  = -[lam log(p_a / (p_a + p_b)) + (1 - lam) log(p_b / (p_a + p_b))]
        global = -log(p_a + p_b)
        L      = local + eta * global,            averaged over the batch

    ``local`` is the binary cross-entropy between the two classes alone (it only moves
    ``z_a - z_b``), ``global`` pushes the other classes down. ``local + global`` is the
    mixup CE ``-lam log p_a - (1 - lam) log p_b`` exactly, so ``eta = 1`` is mixup CE and
    ``eta < 1`` weights the local smoothness more (the paper's balance for training the
    Mixer). A sample whose two images share a class has no pair to balance: its loss is
    the plain CE ``-log p_a``.

    Published default ``eta = 0.5`` (the ``neg_weight=0.5`` of the Mix Block's head,
    "eta in SAMix", in OpenMixup's SAMix configs). Note: in OpenMixup that weight multiplies
    a softmax soft-CE ``-y log softmax(z)`` on the classes with ``y = 0``, i.e. terms that
    are zero, so OpenMixup's published runs trained with ``eta = 1`` in effect (set
    ``eta: 1.0`` to reproduce them).

    Args:
        eta: weight of the global term, >= 0 (default 0.5).

    Mixes that carry ``soft_targets`` are refused (the loss needs the two classes).
    """

    def __init__(self, eta: float = 0.5):
        super().__init__()
        if not float(eta) >= 0.0:
            raise ValueError(f"EtaBalancedMixupLoss.eta must be >= 0, got {eta!r}")
        self.eta = float(eta)

    def forward(self, logits: Tensor, mix) -> Tensor:
        if mix.soft_targets is not None:
            raise ValueError(
                "EtaBalancedMixupLoss needs the two classes of each sample (y_a, y_b, "
                "lam); this mix carries soft_targets. Use MixedCrossEntropy for it"
            )
        logp = F.log_softmax(logits.float(), dim=1)
        log_a = logp.gather(1, mix.y_a[:, None])[:, 0]
        log_b = logp.gather(1, mix.y_b[:, None])[:, 0]
        log_pair = torch.logaddexp(log_a, log_b)  # log(p_a + p_b)
        lam = mix.lam.to(logp.dtype)
        local = -(lam * (log_a - log_pair) + (1 - lam) * (log_b - log_pair))
        loss = local - self.eta * log_pair
        return torch.where(mix.y_a == mix.y_b, -log_a, loss).mean()


@MODELS.register_module()
class SAMixClassifier(AutoMixClassifier):
    """SAMix: :class:`AutoMixClassifier` with SAMix's Mixer and losses.

    The training step is AutoMix's (see :class:`AutoMixClassifier`): an EMA encoder gives
    stage features, the Mixer (a :class:`PixelMixBlock`) makes one mask for the classifier
    (detached; plain Mixup within ``lam_margin``) and one for itself, and::

        loss = CE_mix(head(encoder(x_bb)), lam_bb) + CE(head_one(encoder(x)), y)
             + eta-balanced(head_k(encoder_k(x_mb)), lam_mb)         # Mixer only
             + mask_loss * [max(|mean(M_mb) - lam_mb| - margin, 0) - 2 Var(M_mb)]

    What SAMix changes (the defaults of this class, from OpenMixup's CIFAR-100 ResNet-18
    config ``configs/classification/cifar100/samix/basic/r18_l2_a2_bili_val_dp0_mul_x_cat_L1_var_01_mlr5e_2.py``):

    * the Mixer's loss is :class:`EtaBalancedMixupLoss` with ``eta = 0.5``;
    * lambda is encoded by scaling the features, ``f_a (1 + lam')``, ``f_b (1 + 1 - lam')``
      with ``lam' = rescale_lambda(lam, 0.25)`` (``lam_mul=1, lam_residual, lam_mul_k=0.25``);
    * query and key both come from the concatenated pair ``[f_a; f_b]`` (``x_qk_concat``);
    * the value is a two-layer network (1x1 conv to ``C/2`` channels, BN, ELU, 1x1 conv);
    * bilinear upsampling; mask loss ``L1+Variance`` with margin 0.1.

    The Mixer is label-free: it sees the two images' features and lambda, never the labels
    (the labels enter only through the Mixer's loss).

    Args:
        as :class:`AutoMixClassifier` (same defaults: alpha 2, mask stage 3, mask loss 0.1,
        lambda margin 0.08, momentum 0.999); ``mix_block`` entries override SAMix's Mixer
        settings above (a ``mix_block`` of another ``type`` is used as given);
        ``mix_block_loss`` defaults to ``{type: EtaBalancedMixupLoss, eta: 0.5}``.
    """

    def __init__(self, backbone: dict, head: dict, mix_block_loss: dict | None = None, **kwargs):
        super().__init__(
            backbone=backbone,
            head=head,
            mix_block_loss=mix_block_loss or {"type": "EtaBalancedMixupLoss", "eta": 0.5},
            **kwargs,
        )

    def mix_block_defaults(self, in_channels: int) -> dict:
        """SAMix's Mixer (see the class docstring); the value network is half as wide as
        its input (128 channels on stage 3 of a ResNet-18)."""
        return {
            "reduction": 2,
            "use_scale": True,
            "upsampling": "bilinear",
            "lam_mul": 1.0,
            "lam_residual": True,
            "lam_mul_k": 0.25,
            "x_qk_concat": True,
            "value_hidden": max(in_channels // 2, 1),
            "mask_loss_mode": "L1+Variance",
            "mask_loss_margin": 0.1,
        }
