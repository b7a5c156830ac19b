"""MixPro (Zhao, Huang, Hu, Zhang, Liu, "MixPro: Data Augmentation with MaskMix and
Progressive Attention Labeling for Vision Transformer", ICLR 2023, arXiv:2304.12043;
official code github.com/fistyee/MixPro)."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_alpha, check_choice, check_flag, check_prob, is_int_at_least
from mixbench.mixers.kernels import blend_pairs
from mixbench.mixers.sampling import PAIRINGS, beta_sample, pairing_index
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier
from .transmix import transmix_lambda


def maskmix_mask(
    batch: int, size: tuple, cell: int, lam: float, generator: torch.Generator | None = None
) -> Tensor:
    """MaskMix's per-pixel weight of the first image, (B, 1, H, W) float32 of 0/1.

    The image is covered by a grid of ``cell x cell``-pixel squares, ``ceil(H / cell) x
    ceil(W / cell)`` of them (cells past the border are cut off, as OpenMixup's version
    for grids that do not tile the image). ``count = ceil(cells * lam)`` cells, chosen
    uniformly at random per image (the official ``np.random.permutation(cells)[:count]``),
    keep the first image; the others show the partner. Draws come from ``generator``
    (CPU; the global one when None).
    """
    h, w = size
    gh, gw = -(-h // cell), -(-w // cell)
    cells = gh * gw
    count = min(cells, max(0, math.ceil(cells * float(lam))))
    ranks = torch.rand(batch, cells, generator=generator).argsort(1).argsort(1)  # a random order
    keep = (ranks < count).float().reshape(batch, 1, gh, gw)
    return keep.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :h, :w].contiguous()


def pal_lambda(mask: Tensor, attn: Tensor, area_lam: Tensor, probs: Tensor, area_target: Tensor) -> Tensor:
    """Progressive attention labelling: the label weight of the first image, (B,).

    ``mask`` (B, 1, H, W) and ``area_lam`` (B,) are MaskMix's mask and area weight,
    ``attn`` (B, gh, gw) the class token's attention over the patches of the mixed image,
    ``probs`` (B, K) the model's softmax prediction for it and ``area_target`` (B, K) the
    area-mixed (smoothed) label::

        lam_attn = sum(attn * M) / sum(attn)             # TransMix's attention weight
        a        = cos(area_target, probs)               # the progressive factor, in [0, 1]
        lam      = a * lam_attn + (1 - a) * area_lam

    Early in training the prediction is far from the label, ``a`` is small and the area
    weight dominates; as the model (and its attention) becomes reliable ``a`` grows.
    """
    lam_attn = transmix_lambda(mask, attn, area_lam, ratio=1.0)
    sim = F.cosine_similarity(area_target.float(), probs.float(), dim=1)
    return sim * lam_attn + (1 - sim) * area_lam.float()


@MODELS.register_module()
class MixProClassifier(MixupClassifier):
    """MixPro: MaskMix images with progressive attention labels, for ViTs.

    Paper: Zhao, Huang, Hu, Zhang, Liu, ICLR 2023 (arXiv:2304.12043). With probability
    ``prob`` a batch is mixed by MaskMix, otherwise by ``mixer`` (the DeiT switch of Mixup
    0.8 and CutMix 1.0). A MaskMix step, for a partner ``j = index[i]`` (a random
    permutation, as the official ``torch.randperm``)::

        lam0 ~ Beta(alpha, alpha)                       # one per batch
        M: a grid of cells of mask_cell x mask_cell ViT patches; ceil(lam0 * cells) random
           cells per image are 1 (keep x_i), the rest 0 (x_j)
        x~ = M * x_i + (1 - M) * x_j                    # no patch is split between images
        lam_area = mean(M)                              # = count / cells on a tiling grid
        logits, A = model(x~)                           # A: the last block's class-token
                                                        # attention (mean over heads), same pass
        lam = pal_lambda(M, A, lam_area, softmax(logits), y_area)   # see :func:`pal_lambda`
        loss = lam * CE(logits, y_i) + (1 - lam) * CE(logits, y_j)

    ``y_area = lam_area y_i + (1 - lam_area) y_j`` smoothed like the loss (label smoothing
    ``eps``: ``(1 - eps) onehot + eps / K``, the official ``mixup_target``). With
    ``progressive=False`` the label is the area weight (MaskMix alone).

    Published setting (official ``configs/deit/deit_small_patch14_mask56_224_alpha1.yaml``,
    ImageNet): DeiT-S with 14-px patches, mask cells of 56 px (4 x 4 patches), MaskMix with
    probability 0.5 (``MASKMIX_PROB``), alpha 1.0, PAL on, else timm's Mixup 0.8 / CutMix
    1.0 switch (0.5), label smoothing 0.1 (configs/methods/mixpro.yaml).

    What the official code does differently: the progressive factor is not detached there
    (its cosine similarity passes a gradient into the label weight; here, as in OpenMixup,
    the label weight is a target and carries none); the MaskMix batches' loss is plain
    cross-entropy without label smoothing there (here the configured loss, label smoothing
    included, for every batch). OpenMixup's version reads the attention of the clean images
    from an extra forward pass; here, as the official code, it is the mixed images' own,
    from the training forward pass (no second pass).

    Args:
        backbone: a :class:`ViTBackbone` (class-token attention).
        head, neck, loss, data_preprocessor: see :class:`MixupClassifier`.
        mixer: the mixer of the other batches (default: DeiT's Mixup 0.8 / CutMix 1.0).
        prob: probability of MaskMix per batch (default 0.5).
        alpha: Beta(alpha, alpha) of MaskMix's ratio (default 1.0).
        mask_cell: side of a mask cell in ViT patches (default 4, the paper's DeiT setting).
        progressive: progressive attention labels (True) or the area weight (False).
        pairing: partner of each image (default ``random``; see :mod:`mixbench.mixers.base`).
        generator: optional CPU generator for MixPro's own draws (default: the global one).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        mixer: dict | None = None,
        prob: float = 0.5,
        alpha: float = 1.0,
        mask_cell: int = 4,
        progressive: bool = True,
        pairing: str = "random",
        generator: torch.Generator | None = None,
        **kwargs,
    ):
        if mixer is None:
            mixer = {
                "type": "RandomChoiceMixer",
                "probs": [0.5, 0.5],
                "mixers": [{"type": "Mixup", "alpha": 0.8}, {"type": "CutMix", "alpha": 1.0}],
            }
        super().__init__(backbone=backbone, head=head, mixer=mixer, **kwargs)
        self.check_backbone("MixPro", "cls_attention")
        self.prob = check_prob(prob, "MixProClassifier.prob")
        self.alpha = check_alpha(alpha, "MixProClassifier.alpha")
        if not is_int_at_least(mask_cell, 1):
            raise ValueError(
                f"MixProClassifier.mask_cell is the side of a mask cell in ViT patches, "
                f"an integer >= 1 (the paper's DeiT setting: 4), got {mask_cell!r}"
            )
        ph, pw = self.backbone.model.patch_embed.patch_size
        if ph != pw:
            raise ValueError(f"MixPro's mask cells are square; the ViT's patches are {ph}x{pw}")
        self.mask_cell = mask_cell
        self.cell_px = mask_cell * ph
        self.progressive = check_flag(progressive, "MixProClassifier.progressive")
        self.pairing = check_choice(pairing, PAIRINGS, "MixProClassifier.pairing")
        self.generator = generator

    def maskmix(self, inputs: Tensor, labels: Tensor) -> MixOutput:
        """Mix a batch by MaskMix (``MixOutput`` with the mask and the area weight)."""
        b = inputs.shape[0]
        lam0 = float(beta_sample(self.alpha, self.alpha, 1, self.generator)[0]) if self.alpha > 0 else 1.0
        index = pairing_index(b, self.pairing, self.generator)
        mask = maskmix_mask(b, inputs.shape[-2:], self.cell_px, lam0, self.generator).to(inputs.device)
        index = index.to(inputs.device)
        mixed = blend_pairs(inputs, index, mask, binary=True)
        return MixOutput(
            inputs=mixed, y_a=labels, y_b=labels[index], lam=mask.mean((1, 2, 3)), index=index, mask=mask
        )

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        if not bool(torch.rand((), generator=self.generator) < self.prob):
            return super().loss(inputs, labels)
        out = self.maskmix(inputs, labels)
        feats, attn = self.backbone(out.inputs, return_attn=True)
        logits = self.head(self.neck(feats))
        if self.progressive:
            with torch.no_grad():
                eps = float(getattr(self.loss_module, "label_smoothing", 0.0))
                target = out.target(logits.shape[1]) * (1 - eps) + eps / logits.shape[1]
                lam = pal_lambda(out.mask, attn, out.lam, logits.float().softmax(1), target)
            out = dataclasses.replace(out, lam=lam)
        return {"loss": self.loss_module(logits, out)}
