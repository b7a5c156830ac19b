"""RandomChoiceMixer: one of several mixers per batch (the DeiT / timm recipe of switching
between Mixup and CutMix; OpenMixup's list of ``mix_mode`` with ``mix_prob``).

DeiT (Touvron et al., "Training data-efficient image transformers & distillation through
attention", ICML 2021) trains with ``Mixup(alpha=0.8)`` or ``CutMix(alpha=1.0)``, switching
with probability 0.5 per batch: :func:`DeiTMixer`, or in a config
``{type: RandomChoiceMixer, mixers: [{type: Mixup, alpha: 0.8}, {type: CutMix, alpha: 1.0}],
probs: [0.5, 0.5]}`` (configs/methods/deit.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import BaseMixer, MixOutput
from .checks import check_prob
from .cutmix import CutMix
from .mixup import Mixup


class RandomChoiceMixer(BaseMixer):
    """Apply ``mixers[k]`` with probability ``probs[k]``; with probability
    ``1 - sum(probs)`` the batch is returned unmixed (lam = 1).

    Args:
        mixers: the candidate mixers (instances; configs build them from nested dicts).
        probs: one probability per mixer, each in [0, 1], summing to at most 1
            (default: uniform over the mixers).
        generator: optional CPU generator. When given, it also becomes every child's
            generator, so that one seed fixes the choice and the child's draws.

    A child's own ``prob`` still applies after it is chosen. The model, when given, is
    passed on to the chosen mixer.
    """

    def __init__(
        self,
        mixers: Sequence[BaseMixer],
        probs: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ):
        mixers = list(mixers)
        if not mixers:
            raise ValueError("RandomChoiceMixer needs at least one mixer, got an empty list")
        for i, m in enumerate(mixers):
            if not isinstance(m, BaseMixer):
                raise ValueError(
                    f"mixers[{i}] must be a mixer instance (e.g. CutMix(alpha=1.0)), "
                    f"got {type(m).__name__}; in configs give a dict with a 'type'"
                )
        if probs is None:
            probs = [1.0 / len(mixers)] * len(mixers)
        probs = [check_prob(p, f"probs[{i}]") for i, p in enumerate(probs)]
        if len(probs) != len(mixers):
            raise ValueError(
                f"RandomChoiceMixer got {len(mixers)} mixers but {len(probs)} probs; "
                "give one probability per mixer"
            )
        if sum(probs) > 1 + 1e-6:
            raise ValueError(
                f"probs must sum to at most 1 (the rest is 'no mixing'), got "
                f"{probs} summing to {sum(probs):.6g}"
            )
        self.mixers = mixers
        self.probs = probs
        self._cumulative = torch.tensor(probs, dtype=torch.float64).cumsum(0)
        super().__init__(alpha=0.0, generator=generator)
        self.needs_model = any(m.needs_model for m in mixers)
        self.requires = tuple(dict.fromkeys(r for m in mixers for r in m.requires))

    # mypy cannot follow a setter added to an inherited property (python/mypy#5936)
    @BaseMixer.generator.setter  # type: ignore[attr-defined]
    def generator(self, generator: torch.Generator | None) -> None:
        BaseMixer.generator.fset(self, generator)  # type: ignore[attr-defined]
        if generator is not None:
            for m in self.mixers:
                m.generator = generator

    def choose(self) -> BaseMixer | None:
        """Draw the mixer for this batch (None: no mixing)."""
        u = torch.rand(1, dtype=torch.float64, generator=self.generator)
        k = int((self._cumulative <= u).sum())
        return self.mixers[k] if k < len(self.mixers) else None

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        mixer = self.choose()
        if mixer is None:
            return self.identity(x, y)
        return mixer(x, y, model=model)

    def __repr__(self) -> str:
        return f"RandomChoiceMixer(mixers={self.mixers!r}, probs={self.probs!r})"


def DeiTMixer(
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    pairing: str = "random",
    lam_mode: str = "batch",
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> RandomChoiceMixer:
    """The DeiT recipe: Mixup(0.8) or CutMix(1.0) per batch, CutMix with ``switch_prob``;
    the batch is mixed at all with probability ``prob`` (timm's ``mixup_prob``, 1.0).
    ``pairing='reverse'`` reproduces timm's ``Mixup(mixup_alpha=0.8, cutmix_alpha=1.0)``."""
    check_prob(switch_prob, "switch_prob")
    prob = check_prob(prob, "prob")
    kw: dict[str, Any] = dict(pairing=pairing, lam_mode=lam_mode, inplace=inplace)
    return RandomChoiceMixer(
        [Mixup(alpha=mixup_alpha, **kw), CutMix(alpha=cutmix_alpha, **kw)],
        probs=[prob * (1 - switch_prob), prob * switch_prob],
        generator=generator,
    )


DeiTMixer.is_mixer_factory = True  # type: ignore[attr-defined]  # read by mixbench.registry
