"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR
2016): a 3x3 stride-1 stem and no max-pool, as in OpenMixup's ``ResNet_CIFAR``, and the
ResNeXt variant (Xie et al., "Aggregated Residual Transformations", CVPR 2017); plus the
same CIFAR stem on timm's ConvNeXt (OpenMixup's ``ConvNeXt_CIFAR``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mixbench.registry import MODELS

from .base import StagedBackbone, init_weights
from .timm_backbone import TimmBackbone


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(cin, planes, 3, stride), nn.ReLU(inplace=True), *conv_bn(planes, planes, 3)
        )
        self.shortcut = (
            nn.Sequential(*conv_bn(cin, planes, 1, stride)) if stride != 1 or cin != planes else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64):
        super().__init__()
        mid = int(planes * (base_width / 64.0)) * groups
        if mid == 0:
            raise ValueError(
                f"bottleneck width is 0 (planes {planes}, base_width {base_width}): raise width or base_width"
            )
        cout = planes * self.expansion
        self.body = nn.Sequential(
            *conv_bn(cin, mid, 1),
            nn.ReLU(inplace=True),
            *conv_bn(mid, mid, 3, stride, groups),
            nn.ReLU(inplace=True),
            *conv_bn(mid, cout, 1),
        )
        self.shortcut = (
            nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


# depth -> (block, blocks per stage). 8 and 20 are the 3-stage CIFAR nets of He et al.;
# the others are the 4-stage ImageNet layouts with a CIFAR stem.
ARCHS = {
    8: (BasicBlock, (1, 1, 1)),
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    20: (BasicBlock, (3, 3, 3)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class _ResNet(StagedBackbone):
    def __init__(
        self,
        block,
        stage_blocks: Sequence[int],
        width: int,
        in_channels: int,
        groups: int = 1,
        base_width: int = 64,
        init: str = "kaiming",
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.stem = nn.Sequential(*conv_bn(in_channels, width, 3), nn.ReLU(inplace=True))
        stages, cin = [], width
        self.out_channels = []
        for i, n in enumerate(stage_blocks):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, groups, base_width))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
            self.out_channels.append(cin)
        self.stages = nn.ModuleList(stages)
        self.post = nn.Identity()
        init_weights(self, init)
        if not isinstance(zero_init_residual, bool):
            raise ValueError(f"zero_init_residual must be true or false, got {zero_init_residual!r}")
        if zero_init_residual:  # the last BN of every residual branch at 0: each block starts as its shortcut
            for stage in self.stages:
                for blk in stage:
                    nn.init.zeros_(blk.body[-1].weight)


@MODELS.register_module()
class ResNetCIFAR(_ResNet):
    """ResNet with a CIFAR stem (3x3 conv, stride 1, no max-pool).

    Args:
        depth: 8, 10, 18, 20, 34, 50 or 101 (see ``ARCHS``).
        width: channels of the first stage, doubled at each stage (64 = the standard
            ResNet; 16 for CPU-scale benchmarks).
        in_channels: image channels (3 for RGB, 1 for greyscale).
        stage_blocks: override the blocks per stage (keeps the depth's block type).
        init: ``kaiming`` (default, torchvision's) or ``pytorch`` (the layers' defaults, as
            OpenMixup's current code); see :data:`mixbench.models.backbones.base.INIT_SCHEMES`.
        zero_init_residual: start the last BN of every residual branch at weight 0, so each
            block starts as its shortcut (Goyal et al., 2017; OpenMixup's and mmcls' ResNet
            default, ``zero_init_residual=True``, behind its CIFAR tables). Default False.
    """

    def __init__(
        self,
        depth: int = 18,
        width: int = 64,
        in_channels: int = 3,
        stage_blocks: Sequence[int] | None = None,
        init: str = "kaiming",
        zero_init_residual: bool = False,
    ):
        if depth not in ARCHS:
            raise ValueError(f"ResNetCIFAR depth must be one of {sorted(ARCHS)}, got {depth}")
        block, blocks = ARCHS[depth]
        super().__init__(
            block,
            stage_blocks or blocks,
            width,
            in_channels,
            init=init,
            zero_init_residual=zero_init_residual,
        )


@MODELS.register_module()
class ResNeXtCIFAR(_ResNet):
    """ResNeXt with a CIFAR stem; default ResNeXt-50 (32x4d): bottlenecks (3, 4, 6, 3),
    cardinality 32, base width 4; ``init`` and ``zero_init_residual`` as :class:`ResNetCIFAR`'s."""

    def __init__(
        self,
        depth: int = 50,
        groups: int = 32,
        base_width: int = 4,
        width: int = 64,
        in_channels: int = 3,
        init: str = "kaiming",
        zero_init_residual: bool = False,
    ):
        if depth not in (50, 101):
            raise ValueError(f"ResNeXtCIFAR depth must be 50 or 101, got {depth}")
        super().__init__(
            Bottleneck, ARCHS[depth][1], width, in_channels, groups, base_width, init, zero_init_residual
        )


@MODELS.register_module()
class ConvNeXtCIFAR(TimmBackbone):
    """ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022) for 32-px images, as
    OpenMixup's ``ConvNeXt_CIFAR`` (its CIFAR-100 ConvNeXt-T recipe): timm's ConvNeXt whose
    4x4 stride-4 patchify stem is replaced by a 3x3 stride-1 convolution (padding 1, bias)
    + LayerNorm, so the four stages see 32, 16, 8 and 4 px; the last feature map is global
    average pooled and then layer-normalised (``gap_before_final_norm=True``: timm's head
    norm), and returned as (B, C).

    The stage hook sees the input (stage 0) and the last (B, C, 4, 4) feature map before
    pooling (stage 1), so feature-level mixers (ManifoldMix, AlignMix) mix maps.

    Args:
        model_name: a timm ConvNeXt (``convnext_tiny``: depths 3-3-9-3, dims 96-768).
        pretrained: None or a local checkpoint (the stem does not match ImageNet weights).
        **kwargs: passed to ``timm.create_model`` (``drop_path_rate``: 0.3 in the recipe).
    """

    def __init__(self, model_name: str = "convnext_tiny", pretrained: str | None = None, **kwargs):
        if not model_name.startswith("convnext"):
            raise ValueError(f"ConvNeXtCIFAR wraps timm ConvNeXts (convnext_*), got {model_name!r}")
        for key in ("patch_size", "stem_type"):
            if key in kwargs:
                raise ValueError(f"ConvNeXtCIFAR sets its own stem; remove {key!r}")
        super().__init__(model_name, pretrained=None, patch_size=1, **kwargs)
        old = self.model.stem[0]
        stem = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=old.bias is not None)
        nn.init.trunc_normal_(stem.weight, std=0.02)  # timm's ConvNeXt initialisation
        if stem.bias is not None:
            nn.init.zeros_(stem.bias)
        self.model.stem[0] = stem
        if pretrained:
            self.load_local(pretrained)
