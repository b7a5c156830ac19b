"""The random draws of the mixers: lambdas (Beta, uniform), integers and pairings.

Every draw is made on the CPU from a ``torch.Generator`` (the mixer's, or PyTorch's global
CPU generator when it is None), so that a mixer's output depends on the generator state
alone and is the same on CPU and CUDA (:mod:`mixbench.mixers.base`).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor

#: The ``pairing`` option's values (:func:`pairing_index`).
PAIRINGS = ("random", "no_repeat", "reverse", "roll")
#: Checks of OpenMixup's ``_no_repeat_shuffle_idx`` (pairing ``no_repeat``).
NO_REPEAT_CHECKS = 10


def beta_sample(a: float, b: float, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws of Beta(a, b) as a float64 CPU tensor, reproducible from ``generator``.

    torch's Beta distribution cannot take a generator, so two 63-bit words drawn from the
    (CPU) torch generator set the state of a NumPy PCG64 generator that does the Beta draw.
    The PCG64 object is reused (one per thread) and its state written directly, which costs
    a fraction of seeding a new NumPy generator per call (docs/benchmarks_mixers.md).
    """
    state, inc = torch.randint(0, 2**63 - 1, (2,), generator=generator).tolist()
    rng = getattr(_beta_rng, "rng", None)
    if rng is None:
        rng = _beta_rng.rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "has_uint32": 0,
        "uinteger": 0,
        "state": {"state": state, "inc": 2 * inc + 1},
    }  # inc odd
    return torch.from_numpy(rng.beta(a, b, size=n))


_beta_rng = threading.local()


def uniform_sample(low: float, high: float, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws of U(low, high) as a float64 CPU tensor."""
    return low + (high - low) * torch.rand(n, dtype=torch.float64, generator=generator)


def randint_sample(low: int, high: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` integers uniform in [low, high) (int64, CPU)."""
    return torch.randint(low, high, (n,), generator=generator)


def pairing_index(
    batch_size: int, pairing: str, generator: torch.Generator | None = None, involution: bool = False
) -> Tensor:
    """The permutation that pairs sample ``i`` with ``index[i]`` (int64, CPU).

    ``random``: a uniformly random permutation (OpenMixup, the Mixup paper's code), or with
    ``involution=True`` a uniformly random perfect matching (``index[index[i]] == i``; with
    an odd batch one sample is left paired with itself);
    ``no_repeat``: OpenMixup's ``_no_repeat_shuffle_idx(ignore_failure=True)`` (its CutMix
    and FMix): the permutation is checked for fixed points (``index[i] == i``) and redrawn,
    at most :data:`NO_REPEAT_CHECKS` times, the last redraw kept unchecked; with
    ``involution=True`` the same random matching as ``random`` (it has no fixed point for
    an even batch);
    ``reverse``: the batch flipped, ``index[i] = B - 1 - i`` (timm);
    ``roll``: shifted by one, ``index[i] = i - 1`` (torchvision's ``batch.roll(1, 0)``).
    """
    if pairing in ("random", "no_repeat"):
        perm = torch.randperm(batch_size, generator=generator)
        if not involution:
            if pairing == "no_repeat":
                identity = torch.arange(batch_size)
                for _ in range(NO_REPEAT_CHECKS):
                    if not bool((perm == identity).any()):
                        break
                    perm = torch.randperm(batch_size, generator=generator)
            return perm
        index = torch.arange(batch_size)
        n = batch_size // 2 * 2
        index[perm[0:n:2]] = perm[1:n:2]
        index[perm[1:n:2]] = perm[0:n:2]
        return index
    if pairing == "reverse":
        return torch.arange(batch_size - 1, -1, -1)
    if pairing == "roll":
        return torch.arange(batch_size).roll(1, 0)
    raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
