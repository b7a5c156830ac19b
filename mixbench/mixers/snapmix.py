"""SnapMix (Huang, Wang & Tao, "SnapMix: Semantically Proportional Mixing for Augmenting
Fine-grained Data", AAAI 2021, arXiv:2012.04846).

A box of the paired image ``x_j`` (``j = index[i]``), resized, replaces a box of ``x_i``;
the label weights are the *semantic* shares of the two images, measured by their class
activation maps, not the pixel shares:

    lam_a, lam_b ~ Beta(alpha, alpha)   (two independent draws)
    box_a: side int(H sqrt(1 - lam_a)) x int(W sqrt(1 - lam_a)) at a uniform centre, clipped
    box_b: the same from lam_b
    image: x~_i = x_i with box_a replaced by box_b of x_j, resized to box_a's size
           (bilinear, align_corners=True)
    S_k = normalised CAM of image k for its own label:  CAM - min(CAM), divided by its sum
    rho_a = 1 - sum_{box_a} S_i          (what is left of x_i's semantics)
    rho_b = sum_{box_b} S_j              (what was taken of x_j's semantics)
    loss = rho_a CE(z, y_i) + rho_b CE(z, y_j)

``rho_a + rho_b`` is not 1 in general: the target is ``soft_targets = rho_a e_{y_i} + rho_b
e_{y_j}`` (B, K), whose soft cross-entropy (MixedCrossEntropy) is exactly the loss above.
``lam`` summarises it as ``rho_a / (rho_a + rho_b)``. With ``normalize_labels=True`` the
target is divided by ``rho_a + rho_b`` (a distribution, the same direction).

CAM (Zhou et al. 2016) of the network being trained: with the backbone's last feature map
``f`` (B, C, h, w), ``CAM_k(p) = head(relu(f(p)))_k``, the classifier applied at each
position, upsampled bilinearly (align_corners=False) to the image size. This is the CAM
only when the neck is global average pooling and the head is affine (mixbench's default,
and the official ResNet); both are checked on every call and anything else is refused.

Published setting (the official README and paper, CUB-200 / Cars / Aircraft with
ImageNet-pretrained ResNet-50 at 448 px): alpha 5, every batch mixed (``prob 1``); from
scratch the official README uses ``prob 0.5`` with alpha 1.

Differences from the official code (Shaoli-Huang/SnapMix, ``utils/mixmethod.py``):

* the CAM pass runs without gradients in eval mode (BatchNorm uses, and does not update, its
  running statistics); the official pass runs the model in train mode, updating them;
* boxes span ``[c - cut // 2, c + (cut + 1) // 2)`` like mixbench's CutMix (the official
  ``rand_bbox`` is one pixel shorter for an odd ``cut``); a sample whose box is empty is
  returned unmixed (official: the whole batch, which shares one box there);
* a pair of the same class gets ``(rho_a + rho_b)`` on that class, the paper's formula; the
  official code adds the two weights to *both* terms, so its loss for such a pair is
  ``2 (rho_a + rho_b) CE``;
* a CAM that is constant (sums to zero after the min is subtracted) falls back to the pixel
  shares, ``rho_a = 1 - |box_a| / HW`` and ``rho_b = |box_a| / HW``, which is what the
  official NaN replacement gives.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._feature_mix import frozen_eval, model_backbone
from .base import MaskMixer, MixOutput
from .boxes import box_inside, centred_box, cut_size
from .checks import check_flag
from .kernels import match_format
from .sampling import beta_sample, randint_sample


def class_activation_maps(model, x: Tensor, y: Tensor) -> tuple[Tensor, int]:
    """``(cams, K)``: (B, H, W) float32 normalised CAMs of ``x`` for labels ``y`` (each map
    is >= 0 and sums to 1; a constant map is all zeros), computed without gradients in eval
    mode, and the number of classes K of the head."""
    backbone = model_backbone(model, "SnapMix")
    head, neck = getattr(model, "head", None), getattr(model, "neck", None)
    if not callable(head):
        raise TypeError(
            f"SnapMix needs the classifier's `head` to compute class activation "
            f"maps; {type(model).__name__} has none"
        )
    guard = frozen_eval(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
    with torch.no_grad(), guard:
        feat = backbone(x)
        if not isinstance(feat, Tensor) or feat.dim() != 4:
            shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
            raise ValueError(
                f"SnapMix needs a (B, C, h, w) feature map from the backbone, got "
                f"{shape}; use a convolutional backbone"
            )
        b, c, h, w = feat.shape
        pooled = feat.mean((2, 3))
        # rounding allowance of the two checks: a few units in the last place of the dtype
        tol = max(1e-4, 16 * torch.finfo(feat.dtype).eps)

        def close(a: Tensor, b: Tensor) -> bool:
            a, b = a.float(), b.float()
            return torch.allclose(a, b, rtol=tol, atol=tol * (1 + float(b.abs().max())))

        if neck is not None and callable(neck):
            neck_out = neck(feat)
            if neck_out.shape != pooled.shape or not close(neck_out, pooled):
                raise ValueError(
                    f"SnapMix's class activation maps need a global-average-pool "
                    f"neck; {type(neck).__name__} computes something else"
                )
        cams = head(F.relu(feat).permute(0, 2, 3, 1).reshape(b * h * w, c)).view(b, h, w, -1)
        # an affine head commutes with the average: head(mean f) == mean head(f)
        if not close(head(F.relu(feat).mean((2, 3))), cams.float().mean((1, 2))):
            raise ValueError(
                f"SnapMix's class activation maps need an affine (linear) head; {type(head).__name__} is not"
            )
        cam = cams.gather(3, y.view(b, 1, 1, 1).expand(b, h, w, 1))[..., 0].float()
    cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin((1, 2), keepdim=True)
    total = cam.sum((1, 2), keepdim=True)
    cam = torch.where(total > 0, cam / total.clamp(min=torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    return cam, cams.shape[-1]


def resized_boxes(x: Tensor, index: Tensor, src: tuple, dst: tuple) -> Tensor:
    """(B, C, H, W): inside each sample's ``dst`` box, the ``src`` box of ``x[index]``
    resized to it by bilinear interpolation with ``align_corners=True`` (as
    ``F.interpolate``); outside, the nearest border value (never used). Boxes are
    ``(y1, y2, x1, x2)`` int64 (B,) tensors, non-empty."""
    _, _, h, w = x.shape
    dev = x.device

    def axis(size: int, s1: Tensor, s2: Tensor, d1: Tensor, d2: Tensor):
        # source coordinate of each destination pixel: s1 + (t - d1) * (n_src - 1) / (n_dst - 1)
        n_src, n_dst = (s2 - s1).float(), (d2 - d1).float()
        scale = torch.where(n_dst > 1, (n_src - 1) / (n_dst - 1).clamp(min=1), torch.zeros_like(n_src))
        t = (torch.arange(size, dtype=torch.float32)[None] - d1[:, None].float()).clamp(min=0)
        coord = (t * scale[:, None]).clamp(max=(n_src - 1)[:, None])
        lo = coord.floor()
        frac = coord - lo
        lo = lo.long()
        hi = torch.minimum(lo + 1, (s2 - s1 - 1)[:, None])
        return (lo + s1[:, None]).to(dev), (hi + s1[:, None]).to(dev), frac.to(dev)

    y0, y1, fy = axis(h, src[0], src[1], dst[0], dst[1])
    x0, x1, fx = axis(w, src[2], src[3], dst[2], dst[3])
    part = x.index_select(0, index).float()
    b = torch.arange(x.shape[0], device=dev)[:, None, None]

    def at(rows: Tensor, cols: Tensor) -> Tensor:  # (B, H, W, C) values of part
        return part.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]

    fy, fx = fy[:, :, None, None], fx[:, None, :, None]
    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return (top * (1 - fy) + bottom * fy).permute(0, 3, 1, 2).to(x.dtype)


class SnapMix(MaskMixer):
    """Cut-and-paste with CAM-based (semantically proportional) label weights.

    Args:
        alpha: Beta(alpha, alpha) concentration of the two box-size draws, default 5.0 (the
            paper's fine-grained setting with pretrained networks).
        normalize_labels: divide the target by ``rho_a + rho_b`` (default False: the paper's
            weights as they are).
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base` (``lam_mode``:
            one pair of boxes per batch, per sample or per pair).

    Call as ``mixer(x, y, model=clf)``. ``mask`` is 1 outside ``box_a`` (the weight of
    ``x_i``); its second component is the resized box of ``x_j``, not ``x[index]``.
    """

    needs_model = True
    requires = ("output_map",)  # the class activation maps come from the backbone's output map

    def __init__(
        self,
        alpha: float = 5.0,
        normalize_labels: bool = False,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        super().__init__(
            alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, correct_lam=True, generator=generator
        )
        if self.alpha == 0:
            raise ValueError(
                "SnapMix draws its box sizes from Beta(alpha, alpha) and needs "
                "alpha > 0 (alpha = 0 would paste empty boxes); use prob: 0 to "
                "switch it off"
            )
        self.normalize_labels = check_flag(normalize_labels, "normalize_labels")

    def sample_boxes(self, index: Tensor, h: int, w: int) -> tuple:
        """``(box_a, box_b)``, each ``(y1, y2, x1, x2)`` int64 (B,) CPU tensors."""
        g = self.generator

        def draw(n: int) -> Tensor:
            lam = beta_sample(self.alpha, self.alpha, 2 * n, g).view(2, n)
            cy = randint_sample(0, h, 2 * n, g).view(2, n)
            cx = randint_sample(0, w, 2 * n, g).view(2, n)
            return torch.stack([lam, cy.double(), cx.double()], 2).permute(1, 0, 2)  # (n, 2, 3)

        draws = self.per_sample(draw, index)
        boxes = []
        for k in range(2):
            lam, cy, cx = draws[:, k, 0], draws[:, k, 1].long(), draws[:, k, 2].long()
            boxes.append(centred_box(cy, cx, cut_size(lam, h), cut_size(lam, w), h, w))
        return tuple(boxes)

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        cams, num_classes = class_activation_maps(model, x, y)
        return self.mix_with_cams(x, y, cams, num_classes)

    def mix_with_cams(self, x: Tensor, y: Tensor, cams: Tensor, num_classes: int) -> MixOutput:
        """SnapMix of ``x`` given its (B, H, W) normalised CAMs (for labels ``y``) and the
        number of classes (the width of ``soft_targets``)."""
        b, _, h, w = x.shape
        if cams.shape != (b, h, w):
            raise ValueError(f"cams must be (B, H, W) = {(b, h, w)}, got {tuple(cams.shape)}")
        index = self.sample_index(b)
        box_a, box_b = self.sample_boxes(index, h, w)
        area_a = (box_a[1] - box_a[0]) * (box_a[3] - box_a[2])
        area_b = (box_b[1] - box_b[0]) * (box_b[3] - box_b[2])
        keep = (area_a == 0) | (area_b == 0)  # nothing to paste: unmixed
        box_a = tuple(torch.where(keep, 0, t) for t in box_a)
        box_b = tuple(torch.where(keep, torch.tensor([0, 1, 0, 1])[k], t) for k, t in enumerate(box_b))
        index = index.to(x.device)
        inside_a = box_inside(box_a, h, w, x.device)
        inside_b = box_inside(box_b, h, w, x.device)
        pasted = resized_boxes(x, index, box_b, box_a)
        mixed = match_format(torch.where(inside_a, pasted, x), x)
        mask = (~inside_a).float()

        cams = cams.to(device=x.device, dtype=torch.float32)
        share = 1 - mask.mean((1, 2, 3))  # pixel share of the pasted box
        rho_a = torch.where(cams.sum((1, 2)) > 0, 1 - (cams * inside_a[:, 0]).sum((1, 2)), 1 - share)
        cams_b = cams.index_select(0, index)
        rho_b = torch.where(cams_b.sum((1, 2)) > 0, (cams_b * inside_b[:, 0]).sum((1, 2)), share)
        keep = keep.to(x.device)
        rho_a = torch.where(keep, torch.ones_like(rho_a), rho_a).clamp(0, 1)
        rho_b = torch.where(keep, torch.zeros_like(rho_b), rho_b).clamp(0, 1)

        y_b = y.index_select(0, index)
        total = rho_a + rho_b
        lam = torch.where(total > 0, rho_a / total.clamp(min=1e-12), mask.mean((1, 2, 3)))
        soft = (
            rho_a[:, None] * F.one_hot(y, num_classes).float()
            + rho_b[:, None] * F.one_hot(y_b, num_classes).float()
        )
        if self.normalize_labels:
            soft = torch.where(
                total[:, None] > 0,
                soft / total.clamp(min=1e-12)[:, None],
                lam[:, None] * F.one_hot(y, num_classes).float()
                + (1 - lam[:, None]) * F.one_hot(y_b, num_classes).float(),
            )
        return MixOutput(
            inputs=mixed, y_a=y, y_b=y_b, lam=lam.float(), index=index, mask=mask, soft_targets=soft
        )
