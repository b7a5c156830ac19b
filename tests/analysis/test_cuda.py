"""The analyses on a CUDA device (skipped without one): the same numbers as on the CPU
where they are exact, attacks inside the eps ball, Grad-CAM maps back on the CPU."""

import pytest
import torch
from mbtest.analysis import RegionClassifier, region_mask

from mixbench.analysis.adversarial import fgsm, pgd
from mixbench.analysis.calibration import calibration_metrics
from mixbench.analysis.common import PixelSpaceClassifier
from mixbench.analysis.gradcam import grad_cam

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_calibration_of_cuda_logits_equals_cpu():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 5, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 5, (300,), generator=g)
    cpu = calibration_metrics(logits, labels)
    gpu = calibration_metrics(logits.cuda(), labels.cuda())
    assert gpu["summary"] == pytest.approx(cpu["summary"], rel=1e-9)
    assert [b["count"] for b in gpu["bins"]] == [b["count"] for b in cpu["bins"]]


def test_attacks_on_cuda_stay_in_the_ball():
    model = PixelSpaceClassifier(RegionClassifier()).cuda().eval()
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2)).cuda()
    y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(3)).cuda()
    eps = 8 / 255
    for adv in (
        fgsm(model, x, y, eps),
        pgd(model, x, y, eps, steps=5, generator=torch.Generator().manual_seed(0)),
    ):
        assert adv.device == x.device
        assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    a = pgd(model, x, y, eps, steps=5, generator=torch.Generator().manual_seed(0))
    b = pgd(model, x, y, eps, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # the random start is drawn on the CPU from the seed


def test_gradcam_on_cuda_peaks_in_the_region():
    model = PixelSpaceClassifier(RegionClassifier()).cuda()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)).cuda() * 0.2
    x[..., :6, 8:] = 1.0
    cams, logits = grad_cam(model, x, target=torch.tensor([0, 2]))
    assert cams.device.type == "cpu" and cams.shape == (2, 16, 16) and logits.shape == (2, 3)
    inside = region_mask()
    for cam in cams:
        assert inside[divmod(int(cam.argmax()), 16)]
        assert cam[inside].mean() > 10 * cam[~inside].mean() and cam[:6, 8:].max() == 0
