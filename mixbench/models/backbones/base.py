"""The backbone contract: a stem, a list of stages, and a stage hook.

Every mixbench backbone returns its final feature map (B, C, h, w) and, given
``stage_hook``, calls ``x = stage_hook(0, x)`` on its input and
``feat = stage_hook(k, feat)`` after stage ``k = 1..num_stages``, continuing with what the
hook returns. ManifoldMix and AlignMix mix hidden features this way; saliency methods read
stage outputs the same way.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn

StageHook = Optional[Callable[[int, Tensor], Tensor]]


class StagedBackbone(nn.Module):
    """Base class: subclasses set ``self.stem``, ``self.stages`` (ModuleList),
    ``self.post`` (applied after the last stage, before its hook) and ``self.out_channels``
    (channels after each stage)."""

    stem: nn.Module
    stages: nn.ModuleList
    post: nn.Module
    out_channels: list

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: Tensor, stage_hook: StageHook = None) -> Tensor:
        if stage_hook is not None:
            x = stage_hook(0, x)
        x = self.stem(x)
        last = len(self.stages)
        for k, stage in enumerate(self.stages, 1):
            x = stage(x)
            if k == last:
                x = self.post(x)
            if stage_hook is not None:
                x = stage_hook(k, x)
        return x

    def stage_outputs(self, x: Tensor) -> list:
        """Outputs of every stage (k = 1..num_stages), for analysis and saliency."""
        outs: list = []

        def record(k: int, feat: Tensor) -> Tensor:
            if k > 0:
                outs.append(feat)
            return feat

        self.forward(x, stage_hook=record)
        return outs


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (fan_out, ReLU), unit BN, zero biases (torchvision's)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
