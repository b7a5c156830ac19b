"""Grad-CAM (Selvaraju et al. 2017): maps of the right shape, non-negative, scaled to [0, 1];
on a model whose logit sees one image region only, the map peaks in that region."""
import torch
from torch import nn

from mixbench.analysis.common import PixelSpaceClassifier
from mixbench.analysis.gradcam import cam_grid, grad_cam
from mixbench.models.backbones.base import StagedBackbone

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


def test_cam_peaks_in_the_only_region_the_logit_sees():
    model = PixelSpaceClassifier(RegionClassifier())
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.2
    x[..., :6, 8:] = 1.0  # the brightest content lies elsewhere
    cams, logits = grad_cam(model, x, target=torch.tensor([0, 1, 2]))
    assert cams.shape == (3, 16, 16) and logits.shape == (3, 3)
    assert cams.min() >= 0 and torch.allclose(cams.flatten(1).max(1).values, torch.ones(3))
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[8:16, 0:8] = True  # the region, widened by the stride-2 map's receptive field
    for cam in cams:
        peak = divmod(int(cam.argmax()), 16)
        assert inside[peak], peak
        assert cam[inside].mean() > 10 * cam[~inside].mean()
        assert cam[:6, 8:].max() == 0  # the bright block outside the region gets nothing


def test_cam_of_the_trained_run_and_grid_png(trained, tmp_path):
    from PIL import Image

    x = torch.stack([trained.dataset[i]["inputs"] for i in range(4)]).float() / 255
    cams, logits = grad_cam(trained.model, x)
    assert cams.shape == (4, 16, 16) and logits.shape == (4, trained.num_classes)
    assert cams.min() >= 0 and cams.max() <= 1
    assert torch.allclose(cams.flatten(1).max(1).values, torch.ones(4))
    cams_stage1, _ = grad_cam(trained.model, x, stage=1)
    assert cams_stage1.shape == (4, 16, 16) and not torch.allclose(cams_stage1, cams)
    png = cam_grid(x, cams, [str(i) for i in range(4)], tmp_path / "grid.png")
    assert Image.open(png).size == (int(1.9 * 4 * 120), int(4.3 * 120))
