"""The analysis tests' support: tools/analysis/*.py called in-process, and a tiny classifier
that looks only at one image region (so where its Grad-CAM may be non-zero is known)."""

import torch
from torch import nn

from mbtest.repo import load_script
from mixbench.models.backbones.base import StagedBackbone


def tool_main(tool: str, *args) -> int:
    """Call ``main(argv)`` of ``tools/analysis/<tool>.py`` in this process (the command line
    a user types, without paying a new interpreter's import time)."""
    return load_script(f"tools/analysis/{tool}.py").main([str(a) for a in args])


ROWS, COLS = slice(10, 14), slice(2, 6)  # the region the model looks at (16 x 16 images)


class RegionBackbone(StagedBackbone):
    """Stem: zero every pixel outside ROWS x COLS; one stage: a stride-2 conv with positive
    weights and no bias, then ReLU (an 8 x 8 map, zero away from the region)."""

    def __init__(self):
        super().__init__()
        mask = torch.zeros(1, 1, 16, 16)
        mask[..., ROWS, COLS] = 1
        self.register_buffer("mask", mask)
        conv = nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False)
        nn.init.uniform_(conv.weight, 0.1, 1.0)
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([nn.Sequential(conv, nn.ReLU())])
        self.post = nn.Identity()
        self.out_channels = [4]

    def forward(self, x, stage_hook=None):
        return super().forward(x * self.mask, stage_hook)


class RegionClassifier(nn.Module):
    """The parts of a MixupClassifier that Grad-CAM uses: backbone, logits, preprocessor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = RegionBackbone()
        self.fc = nn.Linear(4, 3)
        nn.init.uniform_(self.fc.weight, 0.1, 1.0)
        self.data_preprocessor = nn.Module()
        self.data_preprocessor.register_buffer("mean", torch.zeros(1, 1, 1, 1))
        self.data_preprocessor.register_buffer("std", torch.full((1, 1, 1, 1), 255.0))

    def logits(self, x, stage_hook=None):
        return self.fc(self.backbone(x, stage_hook).mean((2, 3)))


def region_mask() -> torch.Tensor:
    """(16, 16) bool: where a Grad-CAM of :class:`RegionClassifier` may be non-zero (the
    region, widened by the stride-2 feature map's receptive field)."""
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[8:16, 0:8] = True
    return inside
