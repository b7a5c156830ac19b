"""SaliencyMix (Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for
Better Regularization", ICLR 2021).

As CutMix, but the box (side ``int(H * sqrt(1 - lam))``, ``lam ~ Beta(alpha, alpha)``) is
centred on the most salient pixel of the paired image ``x_j``; label weights follow the
clipped box area (``correct_lam``). Published default (OpenMixup CIFAR-100): alpha 0.2
(paper: 1.0).

Saliency is the paper's choice, the static fine-grained saliency of Montabone & Soto
("Human detection using a mobile platform and novel features derived from a visual
saliency mechanism", Image and Vision Computing 2010), which the official code and
OpenMixup take from OpenCV (``cv2.saliency.StaticSaliencyFineGrained``). Here it is
computed in PyTorch for the whole batch at once, on the input's device, at the image's own
resolution, and gives OpenCV's map value for value on the same 8-bit grey image
(tests/mixers/test_saliencymix.py):

1. an 8-bit grey image: each image's values mapped to 0..255 (its own min and max, all
   channels together) and rounded; then ITU-R BT.601 luma in OpenCV 5's 15-bit fixed point;
2. two 3x3 Gaussian blurs (kernel [1, 2, 1] / 4 per axis, mirrored borders, rounded);
3. for each of six neighbourhoods ``n`` (12, 24, 48, 28, 56, 112 px), the mean ``m`` of
   the box of rows ``r - n + 1 .. r + n`` and columns alike (clipped to the image), the
   centre pixel ``g`` left out; on = ``trunc(g - m)`` where positive, off = ``trunc(m - g)``;
4. on and off summed over the scales, each scaled to 0..255 by its maximum (truncated),
   and the saliency ``(on + off) * 255 / max(max on, max off)``, truncated.

The official code hands OpenCV the *normalised float* image, which this OpenCV function
reads as if it were 8-bit (``gray.at<uchar>`` on a float matrix), so the maps it actually
used are not the algorithm's; we follow the algorithm. The official code (and OpenMixup's
copy) also centres one box, for the whole batch, on the peak of the first sample's partner
``x[index[0]]``; by default here each sample's box is centred on its own paired image's
peak (in ``pair`` mode partners share the box of the lower-indexed partner's source), and
``batch_box=True`` gives the official single box. Ties go to the first pixel in row-major
order, as ``np.argmax`` in the official code. The official box spans ``c - cut // 2 ..
c + cut // 2`` (``box_span='symmetric'``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import BOX_SPANS, BoxMixer
from .checks import check_choice, check_flag

#: Half-sides of the six centre-surround boxes of OpenCV's fine-grained saliency.
NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)


def grey8(x: Tensor) -> Tensor:
    """(B, H, W) float32 integer-valued grey levels 0..255 of a (B, C, H, W) batch.

    Each image is mapped to 0..255 by its own range (all channels together) and rounded, so
    a normalised batch and its 8-bit original give the same grey image when the original
    spans 0..255. Three channels (RGB) are combined with the BT.601 luma of OpenCV 5's
    ``cvtColor``, ``(9798 R + 19235 G + 3735 B + 2**14) >> 15`` (OpenCV 4's 14-bit weights
    differ by one grey level on about 0.2% of pixels); other channel counts are averaged.
    Integers below 2**24 are exact in float32."""
    v = x.detach().float()
    lo = v.amin((1, 2, 3), keepdim=True)
    span = (v.amax((1, 2, 3), keepdim=True) - lo).clamp_(min=1e-12)
    v = v.sub(lo).mul_(255.0 / span).round_()
    if v.shape[1] == 3:
        return (9798 * v[:, 0] + 19235 * v[:, 1] + 3735 * v[:, 2] + 16384).div_(32768).floor_()
    return v.mean(1).round_()


def blur3(g: Tensor) -> Tensor:
    """OpenCV's ``GaussianBlur(ksize=3)`` of 8-bit (B, H, W) images: [1, 2, 1] / 4 on both
    axes, mirrored borders without repeating the edge (reflect-101), rounded half up."""
    mode = "reflect" if min(g.shape[1:]) > 1 else "replicate"  # reflect needs 2 pixels
    p = F.pad(g[:, None], (1, 1, 1, 1), mode=mode)[:, 0]
    rows = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:] + 8).div_(16).floor_()


def fine_grained_saliency(x: Tensor) -> Tensor:
    """(B, H, W) float32 fine-grained saliency maps in [0, 1] (multiples of 1/255) of a
    (B, C, H, W) batch; the steps are in this module's docstring."""
    g = blur3(blur3(grey8(x)))
    b, h, w = g.shape
    # Box sums from an integral image, exact: float32 while they stay below 2**24. Its
    # borders are repeated so that the clipped box corners become plain shifted slices:
    # row min(max(r + s, 0), h) of the integral is row r + s + ph of the padded one.
    exact = torch.float32 if 255 * h * w < 2**24 else torch.float64
    ph, pw = min(max(NEIGHBOURHOODS) + 1, h + 1), min(max(NEIGHBOURHOODS) + 1, w + 1)
    integral = F.pad(g.to(exact).cumsum(1).cumsum(2)[:, None], (1, 0, 1, 0))
    integral = F.pad(integral, (pw, pw, ph, ph), mode="replicate")[:, 0]
    ys = torch.arange(h, device=g.device)
    xs = torch.arange(w, device=g.device)
    on = torch.zeros_like(g)
    off = torch.zeros_like(g)
    for n in NEIGHBOURHOODS:
        # the box: rows r - n + 1 .. r + n and columns alike, clipped to the image
        top, bottom = max(1 - n, -h) + ph, min(n + 1, h + 1) + ph
        left, right = max(1 - n, -w) + pw, min(n + 1, w + 1) + pw
        cols = slice(left, right + w)  # the columns both corners read
        band = integral[:, bottom : bottom + h, cols] - integral[:, top : top + h, cols]
        box = band[:, :, right - left :] - band[:, :, :w]
        y1, y2 = (ys - n + 1).clamp(0, h), (ys + n + 1).clamp(0, h)
        x1, x2 = (xs - n + 1).clamp(0, w), (xs + n + 1).clamp(0, w)
        area = ((y2 - y1)[:, None] * (x2 - x1)[None, :] - 1).float()
        # OpenCV's float32 arithmetic: mean = (box sum - centre) / (area - 1); then centre -
        # mean, truncated: its positive part is "on", its negative part "off"
        diff = torch.sub(g, box.sub_(g).float().div_(area)).trunc_()
        on.add_(diff.clamp(min=0))
        off.sub_(diff.clamp_(max=0))

    def to_byte(t: Tensor) -> Tensor:  # float32 ratio to the image's maximum, times 255.
        ratio = t / t.amax((1, 2), keepdim=True).clamp_(min=1)  # a blank map stays 0
        return ratio.double().mul_(255.0).trunc_()

    on, off = to_byte(on), to_byte(off)
    peak = torch.maximum(on.amax((1, 2), keepdim=True), off.amax((1, 2), keepdim=True))
    sal = on.add_(off).mul_(255.0).div_(peak.clamp_(min=1)).trunc_().clamp_(max=255)
    return sal.float() * torch.tensor(1 / 255, dtype=torch.float32)  # OpenCV's convertTo


def saliency_peaks(x: Tensor) -> tuple[Tensor, Tensor]:
    """(row, col) int64 CPU tensors: each image's most salient pixel (the first in row-major
    order among equals)."""
    w = x.shape[-1]
    peak = fine_grained_saliency(x).flatten(1).argmax(1).cpu()
    return peak // w, peak % w


class SaliencyMix(BoxMixer):
    """CutMix with the box centred on the paired image's fine-grained saliency peak.

    Args:
        alpha: Beta(alpha, alpha) concentration for lambda, default 0.2 (OpenMixup CIFAR).
        batch_box: one box for the whole batch, centred on the saliency peak of the first
            sample's partner (the official code and OpenMixup), default False (each
            sample's box on its own partner's peak). Needs ``lam_mode='batch'``.
        box_span: ``exact`` (default) or ``symmetric`` (the official code and OpenMixup),
            see :func:`mixbench.mixers.boxes.centred_box`.
        correct_lam, prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`.
    """

    def __init__(
        self,
        alpha: float = 0.2,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        correct_lam: bool = True,
        batch_box: bool = False,
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
        self.batch_box = check_flag(batch_box, "batch_box")
        if self.batch_box and lam_mode != "batch":
            raise ValueError(
                f"batch_box=True draws one box for the whole batch and needs "
                f"lam_mode='batch', got lam_mode={lam_mode!r}; use batch_box=False "
                "for a box per sample or pair"
            )
        self.box_span = check_choice(box_span, BOX_SPANS, "box_span")

    def sample_centres(self, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        if self.batch_box:  # the peak of the first sample's partner, for all
            cy, cx = saliency_peaks(x[index[:1].to(x.device)])
            return cy, cx
        cy, cx = saliency_peaks(x)  # each image's peak; sample i takes its partner's
        source = index.cpu()
        if self.lam_mode == "pair":
            source = source[torch.minimum(torch.arange(index.shape[0]), source)]
        return cy[source], cx[source]
