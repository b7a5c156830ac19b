"""Global-average-pool neck and linear classification head."""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.registry import MODELS


@MODELS.register_module()
class GlobalAveragePool(nn.Module):
    """(B, C, h, w) -> (B, C) by the spatial mean; (B, C) passes through."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3)) if x.dim() == 4 else x


@MODELS.register_module()
class LinearHead(nn.Module):
    """A linear layer on pooled features, with optional dropout before it.

    Args:
        num_classes: number of classes.
        in_channels: feature size; filled from the backbone's last stage when omitted.
        dropout: dropout probability before the linear layer (0 by default).
        init_std: None (default): PyTorch's ``nn.Linear`` initialisation (uniform in
            +-1/sqrt(in_channels)); a number: weights ~ N(0, init_std^2), zero bias (OpenMixup's
            ``ClsHead``/``ClsMixupHead``: 0.01).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | None = None,
        dropout: float = 0.0,
        init_std: float | None = None,
    ):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if in_channels is None:
            raise ValueError("LinearHead needs in_channels (MixupClassifier fills it from the backbone)")
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)
        if init_std is not None:
            if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or init_std <= 0:
                raise ValueError(f"init_std must be a positive number or null, got {init_std!r}")
            nn.init.normal_(self.fc.weight, std=float(init_std))
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))
