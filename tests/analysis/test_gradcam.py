"""Grad-CAM (Selvaraju et al. 2017): maps of the right shape, non-negative, scaled to [0, 1];
on a model whose logit sees one image region only, the map peaks in that region."""

import torch
from mbtest.analysis import RegionClassifier, region_mask

from mixbench.analysis.common import PixelSpaceClassifier
from mixbench.analysis.gradcam import cam_grid, grad_cam


def test_cam_peaks_in_the_only_region_the_logit_sees():
    model = PixelSpaceClassifier(RegionClassifier())
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.2
    x[..., :6, 8:] = 1.0  # the brightest content lies elsewhere
    cams, logits = grad_cam(model, x, target=torch.tensor([0, 1, 2]))
    assert cams.shape == (3, 16, 16) and logits.shape == (3, 3)
    assert cams.min() >= 0 and torch.allclose(cams.flatten(1).max(1).values, torch.ones(3))
    inside = region_mask()
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
