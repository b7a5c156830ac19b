"""SaliencyMix (Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for
Better Regularization", ICLR 2021).

As CutMix, but the box (side ``int(H * sqrt(1 - lam))``, ``lam ~ Beta(alpha, alpha)``) is
centred on the most salient pixel of the paired image ``x_j``; label weights follow the
clipped box area (``correct_lam``). Saliency is the static spectral-residual saliency of
Hou & Zhang ("Saliency Detection: A Spectral Residual Approach", CVPR 2007), which the
paper computes with OpenCV: grey image resized to ``size x size`` (64), log amplitude
spectrum ``L``, residual ``R = L - mean3x3(L)``, saliency ``|IFFT(exp(R + i*phase))|^2``
smoothed by a Gaussian (sigma 2.5 at 64 px, Hou & Zhang's reference code; applied in the
Fourier domain, so with circular borders). Here it is computed in PyTorch for the whole
batch at once, on the input's device.
Published default (OpenMixup CIFAR-100): alpha 0.2 (paper: 1.0).

The official code uses the peak of the *first* paired image for the whole batch; here each
sample's box is centred on its own paired image's peak (in ``pair`` mode partners share
the box of the lower-indexed partner's source).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import BoxMixer


def box3(t: Tensor) -> Tensor:
    """3x3 mean of (B, H, W) maps with replicated borders (as Hou & Zhang's averaging)."""
    h, w = t.shape[1:]
    p = F.pad(t[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    rows = p[:, :, 0:w] + p[:, :, 1:w + 1] + p[:, :, 2:w + 2]
    return (rows[:, 0:h] + rows[:, 1:h + 1] + rows[:, 2:h + 2]) / 9


def gaussian_blur_fft(t: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing of (B, H, W) maps as a product in the Fourier domain (circular
    borders): two FFTs instead of dozens of passes of a spatial kernel."""
    h, w = t.shape[1:]
    fy = torch.fft.fftfreq(h, device=t.device)[:, None]
    fx = torch.fft.rfftfreq(w, device=t.device)[None, :]
    transfer = torch.exp(-2 * math.pi ** 2 * sigma ** 2 * (fy ** 2 + fx ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(t) * transfer, s=(h, w))


def spectral_residual_saliency(x: Tensor, size: int = 64, sigma: float = 2.5) -> Tensor:
    """(B, size, size) float32 spectral-residual saliency maps of a (B, C, H, W) batch."""
    gray = x.float().mean(1, keepdim=True)
    gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False)
    spectrum = torch.fft.fft2(gray[:, 0])
    log_amp = torch.log(spectrum.abs().clamp(min=1e-12))
    # exp(R + i*phase) = exp(L - mean3x3(L)) * exp(i*phase) = spectrum * exp(-mean3x3(L))
    saliency = torch.fft.ifft2(spectrum * torch.exp(-box3(log_amp))).abs() ** 2
    return gaussian_blur_fft(saliency, sigma)


def saliency_peaks(x: Tensor, size: int = 64, sigma: float = 2.5) -> tuple[Tensor, Tensor]:
    """(row, col) int64 CPU tensors: the most salient pixel of each image, mapped to the
    image's own coordinates (the centre of the saliency cell)."""
    _, _, h, w = x.shape
    sal = spectral_residual_saliency(x, size, sigma)
    peak = sal.flatten(1).argmax(1).cpu()
    py, px = peak // size, peak % size
    cy = ((py.double() + 0.5) * h / size).floor().long().clamp(0, h - 1)
    cx = ((px.double() + 0.5) * w / size).floor().long().clamp(0, w - 1)
    return cy, cx


class SaliencyMix(BoxMixer):
    """CutMix with the box centred on the paired image's saliency peak.

    Args:
        alpha: Beta(alpha, alpha) concentration for lambda, default 0.2 (OpenMixup CIFAR).
        saliency_size: side of the square on which saliency is computed, default 64
            (OpenCV's StaticSaliencySpectralResidual).
        saliency_sigma: Gaussian smoothing of the saliency map (pixels at that size), 2.5.
        correct_lam, prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`.
    """

    def __init__(self, alpha: float = 0.2, saliency_size: int = 64, saliency_sigma: float = 2.5,
                 prob: float = 1.0, pairing: str = "random", lam_mode: str = "batch",
                 correct_lam: bool = True, generator: Optional[torch.Generator] = None):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode,
                         correct_lam=correct_lam, generator=generator)
        if int(saliency_size) < 4:
            raise ValueError(f"saliency_size must be an integer >= 4, got {saliency_size!r}")
        self.saliency_size = int(saliency_size)
        self.saliency_sigma = float(saliency_sigma)

    def sample_centres(self, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        paired = x.index_select(0, index.to(x.device))
        cy, cx = saliency_peaks(paired, self.saliency_size, self.saliency_sigma)
        if self.lam_mode == "pair":
            owner = torch.minimum(torch.arange(index.shape[0]), index)
            cy, cx = cy[owner], cx[owner]
        return cy, cx
