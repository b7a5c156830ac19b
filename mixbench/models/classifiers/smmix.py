"""SMMix (Chen, Lin, Lin, Zhang, Chao, Ji, "SMMix: Self-Motivated Image Mixing for Vision
Transformers", ICCV 2023, arXiv:2212.12977; official code github.com/ChenMnZ/SMMix)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.mixers._feature_mix import frozen_eval
from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_prob
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier


def window_corners(attn: Tensor, side: int) -> tuple:
    """Top-left corners (B, 2) (row, column, in patches) of the ``side x side`` windows of
    the patch grid with the smallest and with the largest attention sum, per image.

    ``attn`` (B, gh, gw) is an attention map over the patches. Every window position (stride
    1, inside the grid) is scored by the sum of the attention it covers; ties go to the first
    window in row-major order. Returns ``(min_corner, max_corner)``.
    """
    if attn.dim() != 3 or not 1 <= side <= min(attn.shape[-2:]):
        raise ValueError(
            f"window_corners needs attn (B, gh, gw) and 1 <= side <= min(gh, gw), got "
            f"{tuple(attn.shape)} and side {side}"
        )
    sums = F.avg_pool2d(attn[:, None].float(), side, stride=1)[:, 0].flatten(1)  # (B, windows)
    cols = attn.shape[-1] - side + 1

    def corner(flat: Tensor) -> Tensor:
        return torch.stack((flat // cols, flat % cols), dim=1)

    return corner(sums.argmin(1)), corner(sums.argmax(1))


def smmix_images(x: Tensor, attn: Tensor, index: Tensor, side: int) -> tuple:
    """Max-min attention region mixing.

    For every image ``i`` with partner ``j = index[i]``: the ``side x side`` patch window of
    ``x_i`` with the *least* attention is replaced by the ``side x side`` window of ``x_j``
    with the *most* attention (copied patch by patch, so the partner's most attended region
    moves to where ``x_i`` is least informative). ``attn`` (B, gh, gw) is the attention map
    of the clean images; the images' side must be a multiple of the patch grid.

    Returns ``(mixed, keep)``: the mixed batch (B, C, H, W) and ``keep`` (B, gh, gw), 1.0 on
    the patches still from ``x_i`` and 0.0 on the pasted window (from ``x_j``); the area
    weight of ``x_i`` is ``keep.mean() = 1 - side^2 / (gh * gw)``.
    """
    b, _, h, w = x.shape
    gh, gw = attn.shape[-2:]
    if attn.shape[0] != b or h % gh or w % gw or h // gh != w // gw:
        raise ValueError(
            f"smmix_images needs images (B, C, H, W) tiled exactly by the attention "
            f"grid (B, gh, gw) with square patches, got {tuple(x.shape)} and "
            f"{tuple(attn.shape)}"
        )
    patch = h // gh
    low, high = window_corners(attn, side)
    dst, src = low, high[index]  # (B, 2) each, in patches
    rows = torch.arange(gh, device=x.device)
    cols = torch.arange(gw, device=x.device)
    inside = ((rows >= dst[:, :1]) & (rows < dst[:, :1] + side))[:, :, None] & (
        (cols >= dst[:, 1:]) & (cols < dst[:, 1:] + side)
    )[:, None, :]  # (B, gh, gw)
    keep = (~inside).to(x.dtype)
    # each pixel of the pasted window reads the partner at the same offset in its window
    shift = (src - dst).to(x.device) * patch  # (B, 2) in pixels
    pix_r = (torch.arange(h, device=x.device) + shift[:, :1]).clamp(0, h - 1)  # (B, H)
    pix_c = (torch.arange(w, device=x.device) + shift[:, 1:]).clamp(0, w - 1)  # (B, W)
    batch = index.to(x.device)[:, None, None]
    moved = x[batch, :, pix_r[:, :, None], pix_c[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    keep_px = keep.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None]
    mixed = torch.where(keep_px.bool(), x, moved)
    return mixed, keep


def region_token_means(tokens: Tensor, keep: Tensor) -> tuple:
    """Means of the patch tokens (B, N, C) over the kept patches and over the pasted ones
    (``keep`` (B, gh, gw) or (B, N)): the inputs of SMMix's fine-grained token labels."""
    keep = keep.reshape(keep.shape[0], -1, 1).to(tokens.dtype)
    paste = 1 - keep
    return (
        (tokens * keep).sum(1) / keep.sum(1).clamp_min(1),
        (tokens * paste).sum(1) / paste.sum(1).clamp_min(1),
    )


def window_sides(grid: int, side_ratio: Sequence[float]) -> tuple:
    """(smallest, largest) window side in patches: ``int(grid * ratio)`` as the official code."""
    try:
        low, high = (float(r) for r in side_ratio)
    except (TypeError, ValueError):
        raise ValueError(f"side_ratio must be a (min, max) pair, got {side_ratio!r}") from None
    if not 0 < low <= high < 1:
        raise ValueError(
            f"side_ratio must satisfy 0 < min <= max < 1 (the window side as a "
            f"fraction of the patch grid's side), got {side_ratio!r}"
        )
    sides = int(grid * low), int(grid * high)
    if sides[0] < 1:
        raise ValueError(
            f"side_ratio {side_ratio!r} gives windows of 0 patches on a {grid}x{grid} "
            f"patch grid; raise the minimum ratio to at least {1 / grid:.3g}"
        )
    return sides


@MODELS.register_module()
class SMMixClassifier(MixupClassifier):
    """SMMix: self-motivated image and label mixing for ViTs.

    Paper: Chen, Lin, Lin, Zhang, Chao, Ji, "SMMix: Self-Motivated Image Mixing for Vision
    Transformers", ICCV 2023 (arXiv:2212.12977). With probability ``prob`` a batch is mixed
    by SMMix, otherwise by ``mixer`` (Mixup). An SMMix step, with partner ``j = index[i]``
    (the reversed batch, as the official code) on an ``s x s`` patch grid::

        z, A = model(x)                   # eval mode, no grad: logits and attention of the
                                          # clean images, A = mean over heads and patch
                                          # queries of the last block's attention (B, s, s)
        k ~ U{int(s * r_min), ..., int(s * r_max)}          # window side in patches
        R_i = argmin over k x k windows of sum(A_i)         # least attended region of x_i
        Q_j = argmax over k x k windows of sum(A_j)         # most attended region of x_j
        x~_i = x_i with R_i replaced by Q_j of x_j          # max-min attention region mixing
        lam = 1 - k^2 / s^2                                 # area weight of x_i
        loss_cls  = CE(head(cls(x~)), lam y_i + (1 - lam) y_j)
        loss_fine = (CE(head(mean_{t outside R_i} T_t), y_i) + CE(head(mean_{t in R_i} T_t), y_j)) / 2
        loss_con  = KL(softmax(lam z_i + (1 - lam) z_j) || softmax(head(cls(x~))))
        loss = loss_cls + fine_weight * loss_fine + con_weight * loss_con

    ``T`` are the final-normed patch tokens of the mixed images (fine-grained label
    assignment: each token region is supervised by the label of the image it came from),
    ``loss_con`` the feature consistency constraint between the mixed image and the
    mixture of the clean predictions (KL, batch mean). ``CE`` is the configured loss (label
    smoothing included). Mixup batches use ``loss_cls`` only, as the official code.

    Published setting (OpenMixup's DeiT-S CIFAR-100 config ``deit_s_smmix_sz224_bs100_ep200``):
    SMMix with probability 0.8, Mixup(alpha 1.0) otherwise, side 14 (the 14 x 14 grid of
    DeiT-S at 224 px; here the backbone's grid), side ratio 0.25-0.75, label smoothing 0.1
    (configs/methods/smmix.yaml). The official ImageNet script switches with probability
    0.5 and Mixup alpha 0.8.

    Departures, both without effect on what is computed per SMMix batch: the token labels
    use the classifier head (the official code has a second linear ``token_head`` and notes
    that sharing it "does not affect performance"; sharing keeps every parameter used in
    every step, as DDP without ``find_unused_parameters`` needs); the window side is drawn
    from the global torch generator (reseeded every epoch), so runs resume exactly.

    Args:
        backbone: a :class:`ViTBackbone` (attention and patch tokens on request).
        head, neck, loss, data_preprocessor: see :class:`MixupClassifier`.
        mixer: the mixer of the other batches (default ``Mixup`` alpha 1.0).
        prob: probability of SMMix per batch (default 0.8).
        side_ratio: (min, max) window side as a fraction of the grid's side (0.25, 0.75).
        fine_weight: weight of the fine-grained token loss (1.0).
        con_weight: weight of the consistency loss (1.0).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        mixer: dict | None = None,
        prob: float = 0.8,
        side_ratio: Sequence[float] = (0.25, 0.75),
        fine_weight: float = 1.0,
        con_weight: float = 1.0,
        **kwargs,
    ):
        super().__init__(
            backbone=backbone,
            head=head,
            mixer=mixer if mixer is not None else {"type": "Mixup", "alpha": 1.0},
            **kwargs,
        )
        self.check_backbone("SMMix", "cls_attention", "patch_attention")
        gh, gw = self.backbone.grid_size
        if gh != gw:
            raise ValueError(
                f"SMMix mixes square windows of a square patch grid; the backbone's "
                f"grid is {gh}x{gw}: use a square img_size"
            )
        self.prob = check_prob(prob, "SMMixClassifier.prob")
        self.sides = window_sides(gh, side_ratio)
        for name, weight in (("fine_weight", fine_weight), ("con_weight", con_weight)):
            if not float(weight) >= 0:
                raise ValueError(f"SMMixClassifier.{name} must be >= 0 (0 disables the term), got {weight!r}")
        self.fine_weight, self.con_weight = float(fine_weight), float(con_weight)

    def motivate(self, inputs: Tensor) -> tuple:
        """Logits (B, K) and patch attention (B, s, s) of the clean images, from the model
        under training in eval mode and without gradient (the "self-motivation")."""
        with torch.no_grad(), frozen_eval(self):
            feats, attn = self.backbone(inputs, return_attn="patches")
            return self.head(self.neck(feats)), attn

    def smmix(self, inputs: Tensor, labels: Tensor) -> tuple:
        """Mix a batch by SMMix; returns ``(MixOutput, keep, clean_logits)``."""
        clean_logits, attn = self.motivate(inputs)
        side = int(torch.randint(self.sides[0], self.sides[1] + 1, ()))
        index = torch.arange(inputs.shape[0] - 1, -1, -1, device=labels.device)
        mixed, keep = smmix_images(inputs, attn, index, side)
        lam = keep.float().mean((1, 2))
        out = MixOutput(inputs=mixed, y_a=labels, y_b=labels[index], lam=lam, index=index)
        return out, keep, clean_logits

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        if not bool(torch.rand(()) < self.prob):
            return super().loss(inputs, labels)
        out, keep, clean_logits = self.smmix(inputs, labels)
        feats, tokens = self.backbone(out.inputs, return_tokens=True)
        logits = self.head(self.neck(feats))
        losses = {"loss": self.loss_module(logits, out)}
        if self.fine_weight:
            kept, pasted = region_token_means(tokens, keep)
            ones = torch.ones_like(out.lam)
            own = dataclasses.replace(out, y_b=out.y_a, lam=ones)  # the kept tokens' label
            partner = dataclasses.replace(out, y_a=out.y_b, lam=ones)  # the pasted tokens'
            fine = self.loss_module(self.head(self.neck(kept)), own) + self.loss_module(
                self.head(self.neck(pasted)), partner
            )
            losses["fine_loss"] = self.fine_weight * fine / 2
        if self.con_weight:
            lam = out.lam.to(clean_logits.dtype)[:, None]
            target = (lam * clean_logits + (1 - lam) * clean_logits[out.index]).float().softmax(1)
            losses["con_loss"] = self.con_weight * F.kl_div(
                F.log_softmax(logits.float(), 1), target, reduction="batchmean"
            )
        return losses
