"""Boxes for the cut-and-paste mixers (CutMix, SaliencyMix, ResizeMix): sizes from lambda,
clipping at the border, masks, and pasting -- vectorised over per-sample boxes.

A box is four int64 (B,) CPU tensors ``(y1, y2, x1, x2)``: rows ``y1 <= r < y2`` and
columns ``x1 <= c < x2`` come from the paired image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import MaskMixer, MixOutput
from .kernels import match_format, mix_pairs, pick_pair
from .sampling import randint_sample

Box = tuple[Tensor, Tensor, Tensor, Tensor]


def cut_size(lam: Tensor, size: int) -> Tensor:
    """``int(size * sqrt(1 - lam))`` per sample (int64): the side of a box whose area is
    ``1 - lam`` of the image before clipping (CutMix, Yun et al. 2019)."""
    return (size * torch.sqrt(1 - lam.double())).floor().long()


#: ``box_span`` values: ``exact`` spans ``cut`` pixels, ``symmetric`` ``2 * (cut // 2)``.
BOX_SPANS = ("exact", "symmetric")


def box_end(cut, span: str):
    """Pixels from the centre to the box's (exclusive) end: ``(cut + 1) // 2`` (``exact``)
    or ``cut // 2`` (``symmetric``); works on ints and int tensors alike."""
    return (cut + 1) // 2 if span == "exact" else cut // 2


def centred_box(
    cy: Tensor, cx: Tensor, cut_h: Tensor, cut_w: Tensor, h: int, w: int, span: str = "exact"
) -> Box:
    """A ``cut_h x cut_w`` box centred at ``(cy, cx)``, clipped to the ``h x w`` image.

    ``span='exact'`` (default): the box spans ``[c - cut // 2, c + (cut + 1) // 2)``, exactly
    ``cut`` pixels before clipping (timm >= 0.9). ``span='symmetric'``: ``[c - cut // 2,
    c + cut // 2)``, one pixel shorter when ``cut`` is odd, as the CutMix paper's code,
    torchvision, OpenMixup's CutMix/SaliencyMix and the SaliencyMix code. With
    ``correct_lam`` the label weight matches the pasted area either way; the pasted area
    itself is smaller with ``symmetric`` (docs/protocol.md).
    """
    y1 = (cy - cut_h // 2).clamp(0, h)
    y2 = (cy + box_end(cut_h, span)).clamp(0, h)
    x1 = (cx - cut_w // 2).clamp(0, w)
    x2 = (cx + box_end(cut_w, span)).clamp(0, w)
    return y1, y2, x1, x2


def box_inside(box: Box, h: int, w: int, device) -> Tensor:
    """(B, 1, h, w) bool: True inside each sample's box."""
    y1, y2, x1, x2 = (t.to(device)[:, None] for t in box)
    rows = torch.arange(h, device=device)[None]
    cols = torch.arange(w, device=device)[None]
    in_rows = ((rows >= y1) & (rows < y2)).to(torch.uint8)
    in_cols = ((cols >= x1) & (cols < x2)).to(torch.uint8)
    # a product of 0/1 bytes, read as bool: faster than a broadcast bool `&` (docs/benchmarks_mixers.md)
    return torch.mul(in_rows[:, None, :, None], in_cols[:, None, None, :]).view(torch.bool)


def same_box(box: Box) -> bool:
    """True when every sample has the same box."""
    return all(bool((t == t[0]).all()) for t in box)


def paste_box(
    x: Tensor, index: Tensor, y1: int, y2: int, x1: int, x2: int, inplace: bool = False
) -> tuple[Tensor, Tensor]:
    """Paste one box of ``x[index]`` into every image; returns (mixed, (1, 1, H, W) mask).

    A clone (none with ``inplace``) plus a copy of the box only: the full paired batch is
    never gathered.
    """
    _, _, h, w = x.shape
    mixed = x if inplace else x.clone()
    mixed[:, :, y1:y2, x1:x2] = x[:, :, y1:y2, x1:x2].index_select(0, index)
    mask = torch.ones(1, 1, h, w, device=x.device)
    mask[:, :, y1:y2, x1:x2] = 0
    return match_format(mixed, x), mask


def paste_boxes(x: Tensor, index: Tensor, box: Box, inplace: bool = False) -> tuple[Tensor, Tensor]:
    """Paste each sample's box of ``x[index]`` into ``x``; returns (mixed, mask).

    One box for the whole batch: :func:`paste_box`. Per-sample boxes: one ``torch.where``
    of each image and its partner through :func:`mix_pairs` (chunked on the CPU).
    """
    _, _, h, w = x.shape
    if same_box(box):
        y1, y2, x1, x2 = (int(t[0]) for t in box)
        return paste_box(x, index, y1, y2, x1, x2, inplace=inplace)
    outside = ~box_inside(box, h, w, x.device)
    return mix_pairs(x, index, pick_pair, outside, inplace=inplace), outside.float()


class BoxMixer(MaskMixer):
    """A mixer that pastes a box of the paired image whose area follows lambda.

    Subclasses choose the box centres (:meth:`sample_centres`); lambda, the box size
    ``int(H * sqrt(1 - lam)) x int(W * sqrt(1 - lam))``, clipping, pasting and the lambda
    correction are shared.
    """

    inplace = False
    box_span = "exact"  # see centred_box; subclasses take it as an option

    def sample_centres(self, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """(cy, cx) int64 CPU box centres: (B,) each, or (1,) when the whole batch shares
        one (``batch`` mode)."""
        _, _, h, w = x.shape
        centres = self.per_sample(
            lambda n: torch.stack(
                [randint_sample(0, h, n, self.generator), randint_sample(0, w, n, self.generator)], 1
            ),
            index,
            expand=False,
        )
        return centres[:, 0], centres[:, 1]

    def one_box(self, cy: Tensor, cx: Tensor) -> bool:
        """Whether every sample gets the same box: one shared centre, or (``batch`` mode,
        centres found per image, as SaliencyMix's) all centres equal."""
        if cy.shape[0] == 1:
            return True
        return self.lam_mode == "batch" and bool((cy == cy[0]).all() & (cx == cx[0]).all())

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        _, _, h, w = x.shape
        index = self.sample_index(x.shape[0])
        lam = self.sample_lam(index)
        cy, cx = self.sample_centres(x, index)
        if self.one_box(cy, cx):
            # one box: the same arithmetic as centred_box/cut_size on Python numbers
            ratio = math.sqrt(1 - float(lam[0]))
            cut_h, cut_w, c_y, c_x = int(h * ratio), int(w * ratio), int(cy[0]), int(cx[0])
            y1, y2 = max(c_y - cut_h // 2, 0), min(c_y + box_end(cut_h, self.box_span), h)
            x1, x2 = max(c_x - cut_w // 2, 0), min(c_x + box_end(cut_w, self.box_span), w)
            index = index.to(x.device)
            mixed, mask = paste_box(x, index, y1, y2, x1, x2, inplace=self.inplace)
            return self.output(x, y, index, mask, lam, mixed)
        box = centred_box(cy, cx, cut_size(lam, h), cut_size(lam, w), h, w, self.box_span)
        index = index.to(x.device)
        mixed, mask = paste_boxes(x, index, box, inplace=self.inplace)
        return self.output(x, y, index, mask, lam, mixed)
