"""SmoothMix: the common contract and the Gaussian mask."""

import functools

import torch
from mbtest.mixers import check_output, check_standard, make_batch, seeded

from mixbench.mixers import SmoothMix
from mixbench.mixers.smoothmix import gaussian_masks


def test_contract():
    check_standard(functools.partial(SmoothMix), mask_method=True)


def test_mask_is_one_minus_a_gaussian_bump():
    mask = gaussian_masks(
        torch.tensor([3.0]), torch.tensor([5.0]), torch.tensor([4.0]), torch.tensor([4.0]), 16, 16
    )[0, 0].double()
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


def openmixup_kernel(h: int, roll_rows: int, roll_cols: int, sigma: float) -> torch.Tensor:
    """OpenMixup's Gaussian weight of the paired image (augments/smoothmix.py:34-50), built
    as its code describes: a 2h x 2h grid of (column, row) coordinates, rolled by the two
    draws along rows and columns, cropped to its central h x h, Gaussian around h - 0.5."""
    s = 2 * h
    coords = torch.stack(torch.meshgrid(torch.arange(s), torch.arange(s), indexing="xy"), -1)
    coords = torch.roll(torch.roll(coords, roll_rows, 0), roll_cols, 1)[
        h // 2 : s - h // 2, h // 2 : s - h // 2
    ]
    return torch.exp(-((coords.double() - (s - 1) / 2) ** 2).sum(-1) / (2 * sigma**2))


def test_centre_shift_gives_openmixups_half_pixel_centre():
    # OpenMixup draws roll = randint(0, h) - h / 2; our centre pixel c = randint(0, h) and
    # centre_shift = -0.5 put the bump at the same place: row c - 0.5 = roll + h / 2 - 0.5
    h = 16
    for roll_rows, roll_cols, s in ((-8, 7, 0.25), (0, 0, 0.5), (5, -3, 0.37), (7, -8, 0.3)):
        ours = gaussian_masks(
            torch.tensor([roll_rows + h / 2 - 0.5]),
            torch.tensor([roll_cols + h / 2 - 0.5]),
            torch.tensor([s * h]),
            torch.tensor([s * h]),
            h,
            h,
        )[0, 0]
        torch.testing.assert_close(ours, (1 - openmixup_kernel(h, roll_rows, roll_cols, s * h)).float())
    x, y = make_batch(b=4, h=16, w=16)
    for seed in range(10):
        out = check_output(SmoothMix(centre_shift=-0.5, generator=seeded(seed)), x, y)
        m = out.mask[0, 0]
        r, c = divmod(int(m.argmin()), 16)
        if 0 < r < 15 and 0 < c < 15:  # centre between pixels: a 2 x 2 block of minima
            assert torch.equal(m[r : r + 2, c : c + 2], m[r, c].expand(2, 2))


def test_openmixup_label_bug_weights_y_a_by_the_partners_share():
    """OpenMixup returns lam = sum(G) / (h w) for y_a although G weights x[index]
    (augments/smoothmix.py:73-74)."""
    x, y = make_batch(b=6, h=16, w=16)
    right = SmoothMix(lam_mode="elem", generator=seeded(2))(x, y)
    bug = SmoothMix(lam_mode="elem", openmixup_label_bug=True, generator=seeded(2))(x, y)
    assert torch.equal(right.inputs, bug.inputs) and torch.equal(right.mask, bug.mask)
    torch.testing.assert_close(bug.lam, 1 - right.mask.mean((1, 2, 3)))
    torch.testing.assert_close(right.lam, right.mask.mean((1, 2, 3)))
