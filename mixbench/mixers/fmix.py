"""FMix (Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv 2002.12047, 2020).

Mask: sample a random complex spectrum whose amplitude decays as ``1 / f^decay_power``
(``f`` clamped below at ``1 / max(H, W)``), take its inverse real FFT (low-frequency grey
noise), and set the ``round(lam * H * W)`` largest pixels to 1, the rest to 0; image:
``x~ = M * x_i + (1 - M) * x_j``; label: ``y~ = lam * y_i + (1 - lam) * y_j`` with
``lam ~ Beta(alpha, alpha)`` and, after binarisation, ``lam = mean(M)`` exactly.
With ``max_soft > 0`` the ``2 * int(max_soft * H * W)`` pixels around the threshold ramp
linearly from 1 to 0 (soft edges). Published defaults (OpenMixup CIFAR-100, the FMix
paper's CIFAR setting): alpha 0.2 (paper: 1.0), decay_power 3, max_soft 0.

The official code (github.com/ecs-vlc/FMix, fmix.py) and OpenMixup's copy differ from the
paper's description in three ways, each an option here:

* ``official_spectrum_bug``: their spectrum has shape (channels, H, W', 2) and the complex
  spectrum is formed as ``spectrum[:, 0] + 1j * spectrum[:, 1]``, which indexes the
  frequency-row axis, not the real/imaginary axis. What reaches the inverse FFT is a
  (W' x 2) half-spectrum: along the image's columns only the frequencies 0 and 1 (one
  cycle across the width), along its rows the W' = W // 2 + 1 non-negative frequencies of
  the *column* axis, decaying as ``1 / f^decay_power``, zero-padded to H. The masks are
  therefore nearly constant across columns (stripes and one-cycle waves) instead of
  isotropic blobs. True reproduces this exactly (tests/mixers/test_fmix.py);
* ``rounding``: the number of first-image pixels is ``ceil(lam H W)`` or ``floor(lam H W)``
  with probability 1/2 each (``random``) instead of the nearest integer (``nearest``);
* the label: they return the Beta draw, not the mask's mean (``correct_lam=False``).

OpenMixup also pairs with ``pairing='no_repeat'``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MaskMixer, MixOutput
from .checks import check_choice, check_flag, check_number, check_range
from .kernels import blend_pairs

ROUNDINGS = ("nearest", "random")


def fourier_noise(
    n: int,
    h: int,
    w: int,
    decay_power: float,
    generator: torch.Generator | None = None,
    official_spectrum_bug: bool = False,
) -> Tensor:
    """(n, h, w) float64 low-frequency noise: inverse rFFT of a Gaussian spectrum scaled by
    ``1 / max(f, 1 / max(h, w)) ** decay_power`` (CPU); ``official_spectrum_bug``: the
    official code's spectrum (:func:`official_noise`)."""
    if official_spectrum_bug:
        width = official_frequencies(w).shape[0]
        normals = torch.randn(n, 2, width, 2, dtype=torch.float64, generator=generator)
        return official_noise(normals, h, w, decay_power)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    freq = torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / max(h, w))
    scale = freq**-decay_power
    parts = torch.randn(2, n, h, w // 2 + 1, dtype=torch.float64, generator=generator) * scale
    return torch.fft.irfft2(torch.complex(parts[0], parts[1]), s=(h, w))


def official_frequencies(w: int) -> Tensor:
    """The column frequencies of the official code: ``fftfreq(w)[:w // 2 + 1]``, one more
    entry for odd ``w``."""
    return torch.fft.fftfreq(w, dtype=torch.float64)[: w // 2 + 1 + w % 2]


def official_noise(normals: Tensor, h: int, w: int, decay_power: float) -> Tensor:
    """(n, h, w) float64 noise of the official FMix code from its normal draws ``normals``
    (n, 2, W', 2): the entries of frequency rows 0 and 1 of its (H, W', 2) parameter array,
    the only ones its ``spectrum[:, 0] + 1j * spectrum[:, 1]`` reads (module docstring). The
    (W', 2) complex array is inverted by ``irfftn`` with output shape (h, w), as there."""
    if h < 2:
        raise ValueError(
            f"the official FMix spectrum reads frequency row 1 and needs an image of at least 2 rows, got {h}"
        )
    fx = official_frequencies(w)
    floor = 1.0 / max(h, w)
    scale_0 = fx.abs().clamp(min=floor) ** -decay_power  # row f_y = 0
    scale_1 = torch.sqrt(fx**2 + (1.0 / h) ** 2).clamp(min=floor) ** -decay_power  # f_y = 1/h
    spectrum = torch.complex(scale_0[:, None] * normals[:, 0], scale_1[:, None] * normals[:, 1])
    return torch.fft.irfftn(spectrum, s=(h, w), dim=(-2, -1))


def pixel_count(
    lam: Tensor, pixels: int, rounding: str = "nearest", generator: torch.Generator | None = None
) -> Tensor:
    """(n,) int64 first-image pixels for ``lam`` (n,): ``round(lam * pixels)`` (``nearest``)
    or, as the official code, ``ceil`` or ``floor`` of it with probability 1/2 each
    (``random``)."""
    exact = lam.double() * pixels
    if rounding == "nearest":
        return torch.round(exact).long()
    up = torch.rand(lam.shape[0], dtype=torch.float64, generator=generator) > 0.5
    return torch.where(up, exact.ceil(), exact.floor()).long()


def binarise(noise: Tensor, lam: Tensor, max_soft: float = 0.0, num: Tensor | None = None) -> Tensor:
    """(n, 1, h, w) float32 masks with the ``num`` (default ``round(lam * h * w)``) largest
    noise pixels set to 1 (ties have probability zero for continuous noise), soft edges when
    ``max_soft > 0``."""
    n, h, w = noise.shape
    flat = noise.reshape(n, -1)
    if num is None:
        num = pixel_count(lam, h * w)  # pixels of the first image
    if max_soft <= 0:
        ranked = flat.sort(1, descending=True).values
        thresh = ranked.gather(1, (num - 1).clamp(min=0)[:, None])
        mask = (flat >= thresh) & (num[:, None] > 0)
        return mask.float().reshape(n, 1, h, w)
    rank = flat.argsort(1, descending=True).argsort(1).double()  # 0 = largest
    soft = (
        torch.minimum(
            torch.minimum(lam.double(), 1 - lam.double()), torch.tensor(max_soft, dtype=torch.float64)
        )
        * h
        * w
    ).long()
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
            only by the rounding to whole pixels, or by the soft edges). The official code
            and OpenMixup report the Beta draw (False).
        official_spectrum_bug: the official code's (and OpenMixup's) spectrum, default
            False (the paper's isotropic spectrum); see the module docstring.
        rounding: ``nearest`` (default) or ``random`` (the official code: ceil or floor).
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`
            (``batch``: one mask for the batch, as the official code; ``elem``/``pair``:
            one per sample/pair, vectorised).

    The noise and the threshold are computed on the CPU, so CPU and CUDA get the same mask.
    """

    def __init__(
        self,
        alpha: float = 0.2,
        decay_power: float = 3.0,
        max_soft: float = 0.0,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        correct_lam: bool = True,
        official_spectrum_bug: bool = False,
        rounding: str = "nearest",
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
        self.decay_power = check_number(decay_power, "decay_power")
        self.max_soft = check_range(max_soft, "max_soft", 0.0, 0.5)[0]
        self.official_spectrum_bug = check_flag(official_spectrum_bug, "official_spectrum_bug")
        self.rounding = check_choice(rounding, ROUNDINGS, "rounding")

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b, _, h, w = x.shape
        index = self.sample_index(b)
        lam = self.sample_lam(index)
        g = self.generator
        noise = self.per_sample(
            lambda n: fourier_noise(n, h, w, self.decay_power, g, self.official_spectrum_bug),
            index,
            expand=False,
        )
        lam_n = lam[: noise.shape[0]]
        num = pixel_count(lam_n, h * w, self.rounding, g)
        mask = binarise(noise, lam_n, self.max_soft, num).to(x.device)
        index = index.to(x.device)
        mixed = blend_pairs(x, index, mask, binary=self.max_soft == 0)
        return self.output(x, y, index, mask, lam, mixed)
