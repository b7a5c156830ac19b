"""TransMix (Chen et al., "TransMix: Attend to Mix for Vision Transformers", CVPR 2022)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier


def transmix_lambda(mask: Tensor, attn: Tensor, area_lam: Tensor, ratio: float = 0.5) -> Tensor:
    """TransMix's label weight of the first image, per sample (B,).

    ``mask`` (B, 1, H, W) is the per-pixel weight of the first image (1 outside the pasted
    box for CutMix), ``attn`` (B, gh, gw) the class token's attention over the patches,
    ``area_lam`` (B,) the area weight of the first image. The mask is brought to the patch
    grid by nearest-neighbour resampling (as the official code), then::

        lam_attn = sum(attn * mask_grid) / sum(attn)
        lam = (1 - ratio) * area_lam + ratio * lam_attn        # ratio 0.5 in the paper

    The official code computes the pasted image's weight ``(lam0 + lam1) / 2``; this is its
    complement, the weight of the first image.
    """
    if mask.dim() != 4 or attn.dim() != 3 or mask.shape[0] != attn.shape[0]:
        raise ValueError(
            f"transmix_lambda needs mask (B, 1, H, W) and attn (B, gh, gw), got "
            f"{tuple(mask.shape)} and {tuple(attn.shape)}"
        )
    grid = F.interpolate(mask.float(), size=attn.shape[-2:], mode="nearest")[:, 0]
    attn = attn.float()
    lam_attn = (attn * grid).sum((1, 2)) / attn.sum((1, 2)).clamp_min(1e-12)
    return (1 - ratio) * area_lam.float() + ratio * lam_attn


@MODELS.register_module()
class TransMixClassifier(MixupClassifier):
    """TransMix: for a box/mask mix (CutMix), the label weights come from the class token's
    attention over the patches of each image, averaged with the area weights.

    Paper: Chen, Sun, Li, Xie, Yuille, Li, "TransMix: Attend to Mix for Vision
    Transformers", CVPR 2022. Image: the mixer's (CutMix: ``x~ = M x_i + (1 - M) x_j``).
    Label: ``y~ = lam y_i + (1 - lam) y_j`` with ``lam`` from :func:`transmix_lambda`
    (``ratio`` 0.5), using the attention of the last block computed in the same forward
    pass as the logits (no second pass). Batches mixed without a mask (Mixup in the
    Mixup/CutMix switch) keep their own lambda, as in the official code.

    Published setting (paper, DeiT recipe): CutMix alpha 1.0 with probability 0.8 and Mixup
    alpha 0.8 with probability 0.2 per batch, label smoothing 0.1
    (configs/methods/transmix.yaml).

    Args:
        backbone: a backbone accepting ``return_attn=True`` (:class:`ViTBackbone`).
        ratio: weight of the attention lambda against the area lambda (default 0.5).
        Other arguments: see :class:`MixupClassifier`.
    """

    def __init__(self, backbone: dict, head: dict, ratio: float = 0.5, **kwargs):
        super().__init__(backbone=backbone, head=head, **kwargs)
        self.check_backbone("TransMix", "cls_attention")
        if not 0.0 <= float(ratio) <= 1.0:
            raise ValueError(f"TransMixClassifier.ratio must lie in [0, 1], got {ratio!r}")
        self.ratio = float(ratio)

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        out = self.mixer(inputs, labels, model=self)
        if out.stage_hook is not None:
            raise ValueError(
                "TransMix mixes input images; a hidden-stage mixer "
                f"({type(self.mixer).__name__}) cannot be used with it"
            )
        feats, attn = self.backbone(out.inputs, return_attn=True)
        logits = self.head(self.neck(feats))
        if out.mask is not None and out.soft_targets is None:
            with torch.no_grad():
                lam = transmix_lambda(out.mask, attn, out.lam, self.ratio)
            out = dataclasses.replace(out, lam=lam)
        return self.mixed_losses(self.loss_module(logits, out), out)
