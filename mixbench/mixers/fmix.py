"""FMix (Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv 2002.12047, 2020).

Mask: sample a random complex spectrum whose amplitude decays as ``1 / f^decay_power``
(``f`` clamped below at ``1 / max(H, W)``), take its inverse real FFT (low-frequency grey
noise), and set the ``round(lam * H * W)`` largest pixels to 1, the rest to 0; image:
``x~ = M * x_i + (1 - M) * x_j``; label: ``y~ = lam * y_i + (1 - lam) * y_j`` with
``lam ~ Beta(alpha, alpha)`` and, after binarisation, ``lam = mean(M)`` exactly.
With ``max_soft > 0`` the ``2 * int(max_soft * H * W)`` pixels around the threshold ramp
linearly from 1 to 0 (soft edges). Published defaults (OpenMixup CIFAR-100, the FMix
paper's CIFAR setting): alpha 0.2 (paper: 1.0), decay_power 3, max_soft 0.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import MaskMixer, MixOutput, blend_pairs, check_number, check_range


def fourier_noise(n: int, h: int, w: int, decay_power: float,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """(n, h, w) float64 low-frequency noise: inverse rFFT of a Gaussian spectrum scaled by
    ``1 / max(f, 1 / max(h, w)) ** decay_power`` (CPU)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    freq = torch.sqrt(fx ** 2 + fy ** 2).clamp(min=1.0 / max(h, w))
    scale = freq ** -decay_power
    parts = torch.randn(2, n, h, w // 2 + 1, dtype=torch.float64, generator=generator) * scale
    return torch.fft.irfft2(torch.complex(parts[0], parts[1]), s=(h, w))


def binarise(noise: Tensor, lam: Tensor, max_soft: float = 0.0) -> Tensor:
    """(n, 1, h, w) float32 masks with the ``round(lam * h * w)`` largest noise pixels set
    to 1 (ties have probability zero for continuous noise), soft edges when ``max_soft > 0``."""
    n, h, w = noise.shape
    flat = noise.reshape(n, -1)
    num = torch.round(lam.double() * h * w).long()  # pixels of the first image
    if max_soft <= 0:
        ranked = flat.sort(1, descending=True).values
        thresh = ranked.gather(1, (num - 1).clamp(min=0)[:, None])
        mask = (flat >= thresh) & (num[:, None] > 0)
        return mask.float().reshape(n, 1, h, w)
    rank = flat.argsort(1, descending=True).argsort(1).double()  # 0 = largest
    soft = (torch.minimum(torch.minimum(lam.double(), 1 - lam.double()),
                          torch.tensor(max_soft, dtype=torch.float64)) * h * w).long()
    low, high = (num - soft).double()[:, None], (num + soft).double()[:, None]
    ramp = 1 - (rank - low) / (high - low - 1).clamp(min=1)
    mask = torch.where(rank < low, 1.0, torch.where(rank >= high, 0.0, ramp))
    return mask.float().reshape(n, 1, h, w)


class FMix(MaskMixer):
    """Binary masks from thresholded low-frequency Fourier noise.

    Args:
        alpha: Beta(alpha, alpha) concentration for lambda, default 0.2 (OpenMixup CIFAR).
        decay_power: spectrum decay exponent, default 3 (higher: smoother, blobbier masks).
        max_soft: soft-edge fraction in [0, 0.5], default 0 (binary masks).
        correct_lam: report lam = mean(M) (default True; it differs from the Beta draw
            only by the rounding to whole pixels, or by the soft edges).
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`
            (``batch``: one mask for the batch, as the official code; ``elem``/``pair``:
            one per sample/pair, vectorised).

    The noise and the threshold are computed on the CPU, so CPU and CUDA get the same mask.
    """

    def __init__(self, alpha: float = 0.2, decay_power: float = 3.0, max_soft: float = 0.0,
                 prob: float = 1.0, pairing: str = "random", lam_mode: str = "batch",
                 correct_lam: bool = True, generator: Optional[torch.Generator] = None):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode,
                         correct_lam=correct_lam, generator=generator)
        self.decay_power = check_number(decay_power, "decay_power")
        self.max_soft = check_range(max_soft, "max_soft", 0.0, 0.5)[0]

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b, _, h, w = x.shape
        index = self.sample_index(b)
        lam = self.sample_lam(index)
        g = self.generator
        noise = self.per_sample(lambda n: fourier_noise(n, h, w, self.decay_power, g), index,
                                expand=False)
        mask = binarise(noise, lam[:noise.shape[0]], self.max_soft).to(x.device)
        index = index.to(x.device)
        mixed = blend_pairs(x, index, mask, binary=self.max_soft == 0)
        return self.output(x, y, index, mask, lam, mixed)
