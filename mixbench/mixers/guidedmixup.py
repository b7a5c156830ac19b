"""GuidedMixup (Kang & Kim, "GuidedMixup: An Efficient Mixup Strategy Guided by Saliency
Maps", AAAI 2023, arXiv:2306.16612).

Each image gets a saliency map; images whose salient regions differ most are paired; the
two are blended with a *per-pixel* ratio that keeps each image where it is more salient:

    s_i   = G * sal(x_i), normalised so that sum_hw s_i = 1      (G: 7x7 Gaussian, sigma 3)
    index = greedy pairing on d(i, j) = || s_i - s_j ||_2         (one cycle through the batch)
    M_i   = s_i / (s_i + s_j),  j = index[i]                      (per pixel, in [0, 1])
    image: x~_i = M_i * x_i + (1 - M_i) * x_j
    label: y~_i = lam_i y_i + (1 - lam_i) y_j,   lam_i = mean_hw(M_i)

No lambda is drawn: the ratio comes from the saliency maps alone (``alpha`` is not an
option). Saliency (``saliency``):

* ``gradient`` ("Guided-AP", the default): ``sqrt(mean_c (d CE / d x)^2)``, the input
  gradient of the batch-mean cross-entropy of the model being trained, as PuzzleMix's
  (``mixbench.mixers._saliency``: one extra forward/backward in eval mode, gradient w.r.t.
  the input only);
* ``spectral`` ("Guided-SR", no model needed): the spectral residual of Hou & Zhang (CVPR
  2007) as the official code computes it -- the grey image (ITU-R 601-2 luma, 0.2989 R +
  0.587 G + 0.114 B; one channel as is, other channel counts averaged), resized to 128 x 128
  (bilinear) when its height exceeds 128; ``F = FFT2``; ``A = sqrt(|F|^2 + 1e-10)``;
  ``R = exp(log A - box3(log A))`` (3x3 mean, replicated border); the map is
  ``|IFFT2(F * R / A)|`` (the modulus, not its square), blurred by the same 7x7 Gaussian
  and resized back. The pairing blur then applies on top, as in the official code.

Greedy pairing (the official ``onecycle_cover``): mask the diagonal of ``d``; start at the
most distant pair ``(r, c)`` (the first in row-major order among equals), set
``index[r] = c``; from ``c`` go on to the most distant sample not yet left, and so on; the
last one is paired back with ``r``. ``index`` is one cycle through the whole batch, so every
image is used once as the first and once as the second component.

Published settings (the official README, CIFAR-100 / Tiny-ImageNet, PreActResNet-18,
1200 epochs): Guided-AP mixes a batch with probability ``prob = 0.8`` (Guided-SR: 0.5),
greedy pairing, Gaussian 7x7 with sigma 3; otherwise the batch trains clean.

Differences from the official code, on purpose:

* the gradient-saliency pass runs in eval mode and leaves BatchNorm statistics untouched
  (the official pass runs the model in train mode, so it also updates the running
  statistics once more per step); ``clean_lam`` (Tiny-ImageNet Guided-AP: the clean loss of
  that pass trained on) is not implemented;
* where ``s_i + s_j = 0`` at a pixel the ratio is 1/2, and a saliency map that is zero
  everywhere is taken as uniform (the official code divides by zero there and gives NaN);
* OpenMixup's ``guidedmix`` computes the greedy pairing but then mixes with the random
  permutation drawn before it (the pairing is discarded); here the greedy pairing is used;
* the FGVC code of the official repository pairs within groups of ``m_part`` samples;
  here the cycle goes through the whole batch (its CIFAR code, ``greedy_c``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._saliency import input_gradient_saliency
from .base import MaskMixer, MixOutput
from .checks import check_choice, check_number
from .kernels import blend_pairs
from .sampling import PAIRINGS

SALIENCIES = ("gradient", "spectral")
GUIDED_PAIRINGS = ("greedy",) + PAIRINGS
#: Side the spectral residual is computed at when the image is taller (official code).
SR_SIZE = 128


def gaussian_kernel1d(size: int, sigma: float, device=None) -> Tensor:
    """(size,) float32 Gaussian taps ``exp(-t^2 / (2 sigma^2))`` at ``t = -(size-1)/2 ..
    (size-1)/2``, normalised to sum 1 (torchvision's ``gaussian_blur`` kernel)."""
    half = (size - 1) * 0.5
    t = torch.linspace(-half, half, size, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: Tensor, size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, H, W) float maps, ``size x size`` taps, mirrored borders
    without repeating the edge (torchvision's reflect padding; replicated where a side is too
    short to mirror ``size // 2`` pixels)."""
    if size == 1:
        return maps
    k = gaussian_kernel1d(size, sigma, maps.device).to(maps.dtype)
    p = size // 2
    h, w = maps.shape[-2:]
    mode = "reflect" if p < min(h, w) else "replicate"
    x = F.pad(maps[:, None], (p, p, p, p), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, size))
    x = F.conv2d(x, k.view(1, 1, size, 1))
    return x[:, 0]


def grey(x: Tensor) -> Tensor:
    """(B, H, W) float32 grey image: ITU-R 601-2 luma for 3 channels (torchvision's
    ``rgb_to_grayscale``), the channel itself for 1, the channel mean otherwise."""
    v = x.detach().float()
    if v.shape[1] == 3:
        return 0.2989 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]
    return v.mean(1)


def spectral_residual(x: Tensor, blur_size: int = 7, blur_sigma: float = 3.0) -> Tensor:
    """(B, H, W) float32 spectral-residual saliency of a (B, C, H, W) batch, computed as the
    official GuidedMixup code does (steps in the module docstring)."""
    g = grey(x)
    h, w = g.shape[-2:]
    resized = h > SR_SIZE
    if resized:
        g = F.interpolate(
            g[:, None], size=(SR_SIZE, SR_SIZE), mode="bilinear", align_corners=False, antialias=True
        )[:, 0]
    freq = torch.fft.fft2(g)
    mag = (freq.real**2 + freq.imag**2 + 1e-10).sqrt()
    log_mag = mag.log()
    box = F.avg_pool2d(F.pad(log_mag[:, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[:, 0]
    residual = (log_mag - box).exp()
    sal = torch.fft.ifft2(freq * (residual / mag)).abs()
    sal = gaussian_blur(sal, blur_size, blur_sigma)
    if resized:
        sal = F.interpolate(sal[:, None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[
            :, 0
        ]
    return sal


def normalise_maps(maps: Tensor) -> Tensor:
    """Each (H, W) map divided by its sum; a map that sums to zero becomes uniform."""
    total = maps.sum((-2, -1), keepdim=True)
    uniform = torch.full_like(maps, 1.0 / (maps.shape[-2] * maps.shape[-1]))
    return torch.where(total > 0, maps / total.clamp(min=torch.finfo(maps.dtype).tiny), uniform)


def map_distances(maps: Tensor) -> Tensor:
    """(B, B) float64 CPU Euclidean distances between the flattened maps (float64 Gram form,
    on the maps' device)."""
    a = maps.flatten(1).double()
    sq = (a * a).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * a @ a.T).clamp_(min=0)
    return d2.sqrt_().cpu()


def greedy_cycle(dist: Tensor) -> Tensor:
    """The official greedy pairing (``onecycle_cover``) on a (B, B) distance matrix: (B,)
    int64 ``index`` forming one cycle, built by always moving on to the most distant sample
    not yet left (see the module docstring). Ties go to the lowest index."""
    d = dist.detach().double().cpu().numpy().copy()
    b = d.shape[0]
    np.fill_diagonal(d, -np.inf)
    row, col = divmod(int(np.argmax(d)), b)
    first = row
    index = np.empty(b, dtype=np.int64)
    index[row] = col
    d[:, row] = -np.inf
    for _ in range(b - 2):
        row = col
        col = int(np.argmax(d[row]))
        index[row] = col
        d[:, row] = -np.inf
    index[col] = first
    return torch.from_numpy(index)


class GuidedMixup(MaskMixer):
    """Saliency-guided pairing and per-pixel mixing ratios (see the module docstring).

    Args:
        saliency: ``gradient`` (Guided-AP, default; needs the model) or ``spectral``
            (Guided-SR; model-free).
        pairing: ``greedy`` (default, the paper) or one of the shared pairings ``random``,
            ``reverse``, ``roll`` (the official code's ``condition: random`` is ``random``).
        prob: probability that a batch is mixed, default 0.8 (Guided-AP; 0.5 for Guided-SR).
        blur_size, blur_sigma: Gaussian applied to the saliency maps before they are
            normalised, default 7 and 3.0 (both the pairing blur and the spectral
            residual's own blur).
        generator: CPU ``torch.Generator`` for the draws (``prob``, ``random`` pairing).

    ``lam`` is always the exact pixel share of the first image, ``mask.mean((1, 2, 3))``.
    """

    def __init__(
        self,
        saliency: str = "gradient",
        pairing: str = "greedy",
        prob: float = 0.8,
        blur_size: int = 7,
        blur_sigma: float = 3.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__(
            alpha=0.0, prob=prob, pairing="random", lam_mode="batch", correct_lam=True, generator=generator
        )
        self.saliency = check_choice(saliency, SALIENCIES, "saliency")
        self.pairing = check_choice(pairing, GUIDED_PAIRINGS, "pairing")
        if (
            isinstance(blur_size, bool)
            or not isinstance(blur_size, int)
            or blur_size < 1
            or blur_size % 2 == 0
        ):
            raise ValueError(
                f"blur_size must be a positive odd integer (Gaussian taps per "
                f"side; 1 = no blur), got {blur_size!r}"
            )
        self.blur_size = blur_size
        self.blur_sigma = check_number(blur_sigma, "blur_sigma", strict=True)

    @property
    def needs_model(self) -> bool:  # type: ignore[override]  # BaseMixer's class attribute, computed here
        """Gradient saliency needs the model; the spectral residual does not."""
        return self.saliency == "gradient"

    def saliency_maps(self, x: Tensor, y: Tensor, model=None) -> Tensor:
        """(B, H, W) float32 raw saliency (before the pairing blur and normalisation)."""
        if self.saliency == "gradient":
            return input_gradient_saliency(model, x, y)
        return spectral_residual(x, self.blur_size, self.blur_sigma)

    def guided_maps(self, saliency: Tensor) -> Tensor:
        """(B, H, W) float32 blurred, sum-to-one saliency maps ``s_i``."""
        return normalise_maps(gaussian_blur(saliency.float(), self.blur_size, self.blur_sigma))

    def pair(self, maps: Tensor) -> Tensor:
        """(B,) int64 CPU pairing: the greedy cycle on the maps' distances, or a shared pairing."""
        if self.pairing == "greedy":
            return greedy_cycle(map_distances(maps))
        return self.sample_index(maps.shape[0])

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        return self.mix_with_saliency(x, y, self.saliency_maps(x, y, model))

    def mix_with_saliency(self, x: Tensor, y: Tensor, saliency: Tensor) -> MixOutput:
        """GuidedMixup of ``x`` given its (B, H, W) raw saliency maps."""
        b, _, h, w = x.shape
        if saliency.shape != (b, h, w):
            raise ValueError(f"saliency must be (B, H, W) = {(b, h, w)}, got {tuple(saliency.shape)}")
        maps = self.guided_maps(saliency.to(x.device))
        index = self.pair(maps).to(x.device)
        partner = maps.index_select(0, index)
        total = maps + partner
        mask = torch.where(
            total > 0, maps / total.clamp(min=torch.finfo(total.dtype).tiny), torch.full_like(maps, 0.5)
        )[:, None]
        mixed = blend_pairs(x, index, mask)
        return self.output(x, y, index, mask, mask.mean((1, 2, 3)), mixed)

    def __repr__(self) -> str:
        return (
            f"GuidedMixup(saliency={self.saliency!r}, pairing={self.pairing!r}, "
            f"prob={self.prob!r}, blur_size={self.blur_size!r}, "
            f"blur_sigma={self.blur_sigma!r})"
        )
