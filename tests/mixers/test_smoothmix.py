"""SmoothMix: the common contract and the Gaussian mask."""
import functools

import torch

from mixbench.mixers import SmoothMix
from mixbench.mixers.smoothmix import gaussian_masks
from tests.mixers.helpers import check_output, check_standard, make_batch, seeded


def test_contract():
    check_standard(functools.partial(SmoothMix), mask_method=True)


def test_mask_is_one_minus_a_gaussian_bump():
    mask = gaussian_masks(torch.tensor([3.0]), torch.tensor([5.0]), torch.tensor([4.0]),
                          torch.tensor([4.0]), 16, 16)[0, 0].double()
    assert mask[3, 5] == 0  # the paired image fully at the centre
    r, c = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    expected = 1 - torch.exp(-((r.double() - 3) ** 2 + (c.double() - 5) ** 2) / 32)
    torch.testing.assert_close(mask, expected, atol=1e-7, rtol=0)


def test_sigma_and_lambda_ranges():
    x, y = make_batch(b=64, h=32, w=32)
    out = check_output(SmoothMix(lam_mode="elem", generator=seeded(0)), x, y, mask_method=True)
    # sigma in [0.25, 0.5] * H: the bump weighs at most 2*pi*sigma^2 / HW = 0.785 of the image
    assert 0.2 < float(out.lam.min()) and float(out.lam.max()) < 1
    assert len(set(out.lam.tolist())) == 64
    peak = out.mask.flatten(1).argmin(1)  # each centre is a pixel of weight 0
    assert torch.equal(out.mask.flatten(1)[torch.arange(64), peak], torch.zeros(64))
