"""Shared pieces of the mixers that use the network: the stage hook and model checks.

The model contract (mixbench.models; any classifier can follow it): ``model.backbone(x,
stage_hook=None)`` returns the final feature map (B, C, h, w); given ``stage_hook`` it calls
``x = stage_hook(0, x)`` on its input and ``feat = stage_hook(k, feat)`` after each stage
``k = 1..model.backbone.num_stages``, continuing with what the hook returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import Tensor, nn


class StageHook:
    """``hook(k, feat)``: applies ``fn`` to the features of stage ``stage`` only and passes
    every other stage through unchanged (the object the backbone calls, see module doc)."""

    def __init__(self, stage: int, fn: Callable[[Tensor], Tensor]):
        self.stage = int(stage)
        self.fn = fn

    def __call__(self, k: int, feat: Tensor) -> Tensor:
        return self.fn(feat) if k == self.stage else feat

    def __repr__(self) -> str:
        return f"StageHook(stage={self.stage}, fn={getattr(self.fn, '__name__', self.fn)!r})"


def model_backbone(model, mixer: str):
    """``model.backbone`` with a clear error when the model does not follow the contract."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or not callable(backbone):
        raise TypeError(
            f"{mixer} needs a classifier with a callable `backbone(x, stage_hook=None)` "
            f"(mixbench's model contract), got {type(model).__name__} without one; build the "
            "model with mixbench.models or give it a `backbone` that returns (B, C, h, w) "
            "features and calls stage_hook(k, feat) at its stages"
        )
    return backbone


def backbone_num_stages(model, mixer: str) -> int:
    """Number of hookable stages of ``model.backbone`` (stage 0 is the input)."""
    backbone = model_backbone(model, mixer)
    num_stages = getattr(backbone, "num_stages", None)
    if not isinstance(num_stages, int) or num_stages < 1:
        raise TypeError(
            f"{mixer} mixes hidden features through the backbone's stage hook and needs "
            f"`model.backbone.num_stages` (a positive int), got {num_stages!r} on "
            f"{type(backbone).__name__}"
        )
    return num_stages


@contextlib.contextmanager
def frozen_eval(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (BatchNorm uses, and does not update, its running
    statistics; dropout is off), then give every submodule back its own train/eval flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag
