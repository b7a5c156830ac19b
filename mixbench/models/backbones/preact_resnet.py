"""Pre-activation ResNets (He et al., "Identity Mappings in Deep Residual Networks", ECCV
2016): PreAct-ResNet-18 with a CIFAR stem, and Wide ResNets (Zagoruyko & Komodakis,
"Wide Residual Networks", BMVC 2016) such as WRN-28-8."""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.registry import MODELS

from .base import StagedBackbone, init_weights


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, projection shortcut on the activated input."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + shortcut


class _PreActNet(StagedBackbone):
    def __init__(
        self, stem_channels: int, widths, blocks, in_channels: int, dropout: float, init: str = "kaiming"
    ):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False)
        stages, cin = [], stem_channels
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layers = []
            for j in range(n):
                layers.append(PreActBlock(cin, w, 2 if (j == 0 and i > 0) else 1, dropout))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(widths)
        self.post = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        init_weights(self, init)


@MODELS.register_module()
class PreActResNetCIFAR(_PreActNet):
    """PreAct-ResNet-18 (blocks (2, 2, 2, 2), widths 64..512) with a 3x3 CIFAR stem;
    ``width`` scales all stages; ``init`` as :class:`ResNetCIFAR`'s."""

    def __init__(self, depth: int = 18, width: int = 64, in_channels: int = 3, init: str = "kaiming"):
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
        if depth not in blocks:
            raise ValueError(f"PreActResNetCIFAR depth must be 18 or 34, got {depth}")
        super().__init__(width, [width * 2**i for i in range(4)], blocks[depth], in_channels, 0.0, init)


@MODELS.register_module()
class WideResNet(_PreActNet):
    """WRN-d-k: 3 stages of (d - 4) / 6 pre-activation blocks with widths 16k, 32k, 64k after
    a 16-channel stem. OpenMixup's CIFAR setting: WRN-28-8, dropout 0.

    Args:
        depth: 6n + 4 (28 -> 4 blocks per stage).
        widen_factor: k (8 for WRN-28-8).
        dropout: dropout between the two convolutions of a block (0 by default).
        init: as :class:`ResNetCIFAR`'s.
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 8,
        dropout: float = 0.0,
        in_channels: int = 3,
        init: str = "kaiming",
    ):
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        super().__init__(
            16,
            [16 * widen_factor, 32 * widen_factor, 64 * widen_factor],
            (n, n, n),
            in_channels,
            dropout,
            init,
        )
