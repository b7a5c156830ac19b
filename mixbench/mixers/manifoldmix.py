"""ManifoldMix (Verma et al., "Manifold Mixup: Better Representations by Interpolating
Hidden States", ICML 2019).

Mixup applied to the hidden representation of a randomly chosen stage ``k`` of the network:
``h~_k = lam * h_k(x_i) + (1 - lam) * h_k(x_j)``, label ``y~ = lam * y_i + (1 - lam) * y_j``,
with ``lam ~ Beta(alpha, alpha)``, ``j = index[i]`` and ``k`` drawn uniformly from
``stages`` at every batch (stage 0 is the input, i.e. input Mixup).

Published defaults: ``alpha = 2``; ``stages = (0, 1, 2)``: the input and the outputs of the
first two residual stages, as in the paper's PreActResNet experiments (official code:
``layer_mix = random.randint(0, 2)``) and OpenMixup's CIFAR configs (``layer=(0, 3)``, drawn
with NumPy's exclusive upper bound, so again {0, 1, 2}).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._feature_mix import StageHook, backbone_num_stages
from .base import BaseMixer, MixOutput
from .kernels import lerp_images


def check_stages(stages: Sequence[int]) -> tuple:
    """Validate a non-empty list of distinct integer stages >= 0 (0 = the input)."""
    ok = (
        isinstance(stages, (list, tuple))
        and len(stages) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in stages)
        and len(set(stages)) == len(stages)
    )
    if not ok:
        raise ValueError(
            "stages must be a non-empty list of distinct integers >= 0 "
            f"(0 = the input, k = after stage k), got {stages!r}"
        )
    return tuple(stages)


class ManifoldMix(BaseMixer):
    """Mixup of hidden features at a stage drawn uniformly from ``stages``.

    The returned :class:`MixOutput` holds the clean batch in ``inputs`` and a ``stage_hook``
    that mixes ``lam * f + (1 - lam) * f[index]`` at the drawn stage (``out.stage_hook.stage``)
    and passes every other stage through; the classifier runs
    ``model.logits(out.inputs, stage_hook=out.stage_hook)``. ``y_a``, ``y_b``, ``lam`` and
    ``index`` are those of Mixup.

    Args:
        alpha: Beta(alpha, alpha) concentration, default 2.0.
        stages: stages to draw from, default (0, 1, 2); 0 mixes the input, ``k`` the output
            of stage ``k`` (at most ``model.backbone.num_stages``).
        prob, pairing, lam_mode, generator: see :class:`~mixbench.mixers.base.BaseMixer`.
    """

    needs_model = True

    def __init__(
        self,
        alpha: float = 2.0,
        stages: Sequence[int] = (0, 1, 2),
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, generator=generator)
        self.stages = check_stages(stages)
        self.requires = (f"stage:{max(self.stages)}",)

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        num_stages = backbone_num_stages(model, type(self).__name__)
        if max(self.stages) > num_stages:
            raise ValueError(
                f"ManifoldMix stages {list(self.stages)} go beyond the backbone's "
                f"{num_stages} stages; use stages between 0 (input) and {num_stages}"
            )
        index = self.sample_index(x.shape[0])
        lam = self.sample_lam(index)  # float64 on the CPU: 1 - lam formed exactly, as Mixup
        index = index.to(x.device)
        pick = int(torch.randint(len(self.stages), (1,), generator=self.generator).item())

        def mix_features(feat: Tensor) -> Tensor:
            return lerp_images(feat, index, lam)

        return MixOutput(
            inputs=x,
            y_a=y,
            y_b=y[index],
            lam=lam.to(device=x.device, dtype=torch.float32),
            index=index,
            stage_hook=StageHook(self.stages[pick], mix_features),
        )
