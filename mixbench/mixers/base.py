"""The mixer contract shared by every method: :class:`MixOutput` and :class:`BaseMixer`.

Pure PyTorch (plus NumPy for Beta draws): nothing here imports mmengine or the rest of
mixbench, so ``from mixbench.mixers import Mixup`` works in any training loop.

Randomness convention (one rule for every mixer): all random draws -- lambda, the pairing
permutation, box positions, noise -- come from a *CPU* ``torch.Generator`` (the one given
to the mixer, or PyTorch's global CPU generator when none is given) and are moved to the
input's device afterwards. A mixer's output is therefore a function of the generator state
alone, identical on CPU and CUDA.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

PAIRINGS = ("random", "reverse", "roll")
LAM_MODES = ("batch", "pair", "elem")


@dataclass
class MixOutput:
    """What a mixer returns.

    Attributes:
        inputs: (B, C, H, W) mixed batch (for feature-space methods: the clean batch).
        y_a: (B,) int64 labels of the first component.
        y_b: (B,) int64 labels of the second component (``y_a[index]`` for pairwise methods).
        lam: (B,) float weight of ``y_a`` in the target; ``1 - lam`` is the weight of ``y_b``.
        index: (B,) int64 pairing permutation: sample ``i`` is mixed with ``index[i]``.
        mask: (B, 1, H, W) per-pixel weight of the first image for mask-based methods, so
            that ``inputs == mask * x + (1 - mask) * x[index]``; None otherwise.
        soft_targets: (B, K) target distribution for methods whose label is not a two-way
            mix (Co-Mixup, token labels). When present the loss uses it and ignores
            ``y_b`` / ``lam``.
        stage_hook: for methods that mix hidden features (ManifoldMix, AlignMix): a callable
            ``hook(stage, feat) -> feat`` that the backbone calls on its input (stage 0) and
            after each stage ``k = 1..num_stages``.
    """

    inputs: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: Tensor
    index: Tensor
    mask: Optional[Tensor] = None
    soft_targets: Optional[Tensor] = None
    stage_hook: Optional[Callable[[int, Tensor], Tensor]] = None

    def target(self, num_classes: int) -> Tensor:
        """The (B, K) target distribution this output trains towards."""
        if self.soft_targets is not None:
            return self.soft_targets
        dtype = self.lam.dtype if self.lam.is_floating_point() else torch.float32
        one_a = torch.nn.functional.one_hot(self.y_a, num_classes).to(dtype)
        one_b = torch.nn.functional.one_hot(self.y_b, num_classes).to(dtype)
        lam = self.lam.to(dtype)[:, None]
        return lam * one_a + (1 - lam) * one_b


def check_inputs(x: Tensor, y: Tensor) -> None:
    """Raise a clear error unless ``x`` is (B, C, H, W) and ``y`` int64 of shape (B,)."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"mixer inputs must be a (B, C, H, W) tensor, got {shape}")
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        desc = (f"{y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, Tensor)
                else type(y).__name__)
        raise ValueError(
            "mixer labels must be an int64 tensor of shape (B,) holding class indices, "
            f"got {desc}; convert with labels.long() (one-hot labels are not accepted)")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"batch size mismatch: {x.shape[0]} images but {y.shape[0]} labels")


def check_alpha(alpha: float, name: str = "alpha") -> float:
    alpha = float(alpha)
    if not alpha >= 0:
        raise ValueError(f"{name} must be >= 0 (lambda ~ Beta({name}, {name})), got {alpha}")
    return alpha


def check_prob(prob: float, name: str = "prob") -> float:
    prob = float(prob)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {prob}")
    return prob


def check_choice(value: str, choices, name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def beta_sample(a: float, b: float, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """``n`` draws of Beta(a, b) as a float64 CPU tensor, reproducible from ``generator``.

    torch's Beta distribution cannot take a generator, so a 63-bit seed drawn from the
    (CPU) torch generator seeds a NumPy generator that does the Beta draw. ``a == 0`` or
    ``b == 0`` degenerates to a point mass (a = 0: lambda = 0 ... handled by callers).
    """
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.beta(a, b, size=n))


def pairing_index(batch_size: int, pairing: str, generator: Optional[torch.Generator] = None) -> Tensor:
    """The permutation that pairs sample ``i`` with ``index[i]`` (int64, CPU).

    ``random``: a uniformly random permutation (OpenMixup, the Mixup paper's code);
    ``reverse``: the batch flipped, ``index[i] = B - 1 - i`` (timm);
    ``roll``: shifted by one, ``index[i] = i - 1`` (torchvision's ``batch.roll(1, 0)``).
    """
    if pairing == "random":
        return torch.randperm(batch_size, generator=generator)
    if pairing == "reverse":
        return torch.arange(batch_size - 1, -1, -1)
    if pairing == "roll":
        return torch.arange(batch_size).roll(1, 0)
    raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")


class BaseMixer(abc.ABC):
    """Base class of all mixers.

    Shared options:
        alpha: lambda ~ Beta(alpha, alpha); ``alpha == 0`` means no mixing (lambda = 1).
        prob: probability that a batch is mixed at all (else it is returned unmixed, lam=1).
        pairing: ``random`` (default), ``reverse`` (timm) or ``roll`` (torchvision).
        lam_mode: ``batch`` -- one lambda per batch (the published default);
            ``elem`` -- one lambda per sample; ``pair`` -- one per pair (defined for
            ``reverse`` pairing, where ``i`` and ``B-1-i`` are partners).
        generator: optional CPU ``torch.Generator`` used for every random draw.

    A batch of size 1 cannot be paired: it is returned unmixed with ``lam = 1``.
    Subclasses implement :meth:`mix`.
    """

    needs_model = False

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, pairing: str = "random",
                 lam_mode: str = "batch", generator: Optional[torch.Generator] = None):
        self.alpha = check_alpha(alpha)
        self.prob = check_prob(prob)
        self.pairing = check_choice(pairing, PAIRINGS, "pairing")
        self.lam_mode = check_choice(lam_mode, LAM_MODES, "lam_mode")
        if lam_mode == "pair" and pairing != "reverse":
            raise ValueError("lam_mode='pair' needs pairing='reverse' (partners i and B-1-i "
                             "share one lambda); use lam_mode='elem' for random pairing")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("generator must be a CPU torch.Generator (all draws are made on "
                             "the CPU so that CPU and CUDA give identical results)")
        self.generator = generator

    # -- randomness helpers -------------------------------------------------------------
    def sample_lam(self, batch_size: int) -> Tensor:
        """(B,) float64 CPU lambdas following ``lam_mode``."""
        if self.alpha == 0:
            return torch.ones(batch_size, dtype=torch.float64)
        if self.lam_mode == "batch":
            return beta_sample(self.alpha, self.alpha, 1, self.generator).expand(batch_size).clone()
        if self.lam_mode == "elem":
            return beta_sample(self.alpha, self.alpha, batch_size, self.generator)
        half = (batch_size + 1) // 2
        lam_half = beta_sample(self.alpha, self.alpha, half, self.generator)
        return torch.cat([lam_half, lam_half[: batch_size // 2].flip(0)])

    def sample_index(self, batch_size: int) -> Tensor:
        return pairing_index(batch_size, self.pairing, self.generator)

    def apply_this_batch(self) -> bool:
        """Bernoulli(prob) draw deciding whether this batch is mixed."""
        if self.prob >= 1.0:
            return True
        if self.prob <= 0.0:
            return False
        return bool(torch.rand(1, generator=self.generator).item() < self.prob)

    def identity(self, x: Tensor, y: Tensor) -> MixOutput:
        """The unmixed output: lam = 1, identity pairing."""
        b = x.shape[0]
        return MixOutput(inputs=x, y_a=y, y_b=y, lam=torch.ones(b, device=x.device),
                         index=torch.arange(b, device=x.device))

    # -- public API ----------------------------------------------------------------------
    def __call__(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        check_inputs(x, y)
        if self.needs_model and model is None:
            raise ValueError(f"{type(self).__name__} needs the model: call mixer(x, y, model=...)")
        if x.shape[0] < 2 or not self.apply_this_batch():
            return self.identity(x, y)
        return self.mix(x, y, model=model)

    @abc.abstractmethod
    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        """Mix a batch of at least two samples (``__call__`` has validated it)."""

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k != "generator"]
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


def lerp_images(x: Tensor, index: Tensor, lam: Tensor) -> Tensor:
    """``lam * x + (1 - lam) * x[index]`` with per-sample ``lam`` (B,), in ``x``'s dtype."""
    lam_x = lam.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return x * lam_x + x[index] * (1 - lam_x)
