"""GridMix: the common contract and grid geometry (holes aligned on a regular grid)."""

import functools
import math

import numpy as np
import torch
from mbtest.mixers import check_output, check_standard, make_batch, seeded

from mixbench.mixers import GridMix
from mixbench.mixers.gridmix import grid_masks


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(GridMix, alpha=1.0), mask_method=True, alpha=0.2)


def one(v, dtype=torch.float64):
    return torch.tensor([v], dtype=dtype)


def test_grid_geometry_by_hand():
    # 32x32 image, whole image as crop (area 1, aspect 1, origin 0), 4 cells of 8 px, lam = 0.75:
    # holes of int(8 * 0.5) = 4 px at the top-left of every cell.
    mask = grid_masks(one(0.75), one(4), one(1.0), one(1.0), one(1.0), one(0.0), one(0.0), 32, 32, "cpu")[
        0, 0
    ]
    hole = mask == 0
    cell = torch.zeros(8, 8, dtype=torch.bool)
    cell[:4, :4] = True
    assert torch.equal(hole, cell.repeat(4, 4))


def test_holes_are_aligned_cells():
    x, y = make_batch(b=16, h=32, w=32)
    out = check_output(GridMix(alpha=1.0, lam_mode="elem", generator=seeded(0)), x, y)
    for m in out.mask[:, 0]:
        hole = m == 0
        rows = hole.any(1).nonzero().flatten()
        cols = hole.any(0).nonzero().flatten()
        # the holes form a product of row runs and column runs: a grid
        assert torch.equal(hole[rows][:, cols], hole.any(1)[rows][:, None] & hole.any(0)[cols][None, :])
        assert torch.equal(hole, hole.any(1)[:, None] & hole.any(0)[None, :])
        # runs start at a fixed period
        starts = cols[torch.cat([torch.tensor([True]), cols.diff() > 1])]
        if starts.numel() > 2:
            assert len(set(starts.diff().tolist())) == 1


def test_n_holes_range_is_honoured():
    x, y = make_batch(b=64, h=64, w=64)
    out = GridMix(
        alpha=1.0, n_holes=3, cut_area_ratio=1.0, cut_aspect_ratio=1.0, lam_mode="elem", generator=seeded(1)
    )(x, y)
    for m in out.mask[:, 0]:
        cols = (m == 0).any(0).nonzero().flatten()
        runs = 1 + int((cols.diff() > 1).sum()) if cols.numel() else 0
        assert runs in (3, 4)  # 3 cells across the crop (a 4th may start at its edge)


def openmixup_grid(lam, n_holes, hole_aspect, area, aspect, u_y, u_x, size):
    """OpenMixup's GridMix mask (augments/gridmix.py:47-98) for one parameter draw, written
    from its description with NumPy slicing, so that negative offsets behave as there:
    1 = pixel from the partner."""
    cut_w = int(math.sqrt(int(size * size * area) / aspect))
    cut_h = int(cut_w * aspect)
    xc1, yc1 = int((size - cut_w) * u_x), int((size - cut_h) * u_y)
    pw = math.ceil(cut_w / n_holes)
    ph = int(pw * hole_aspect)
    ny = math.ceil(cut_h / ph)
    ratio = math.sqrt(1 - lam)
    hw = min(max(int(pw * ratio), 1), pw - 1)
    hh = min(max(int(ph * ratio), 1), ph - 1)
    mask = np.zeros((size, size))
    for i in range(n_holes + 1):
        for j in range(ny + 1):
            x1, y1 = min(pw * i, cut_w), min(ph * j, cut_h)
            x2, y2 = min(x1 + hw, cut_w), min(y1 + hh, cut_h)
            mask[yc1 + y1 : yc1 + y2, xc1 + x1 : xc1 + x2] = 1
    return mask, cut_w > size or cut_h > size


def test_openmixup_wrap_bug_equals_openmixups_mask():
    rng = np.random.default_rng(0)
    overflow = differs = 0
    n = 400
    for _ in range(n):
        draw = (
            rng.beta(0.2, 0.2),
            int(rng.integers(2, 7)),
            1.0,
            rng.uniform(0.5, 1.0),
            rng.uniform(0.5, 2.0),
            rng.random(),
            rng.random(),
        )
        expected, big = openmixup_grid(*draw, 32)
        args = [one(v) for v in draw]
        ours = grid_masks(*args, 32, 32, "cpu", openmixup_wrap_bug=True)[0, 0]
        assert np.array_equal(1 - ours.numpy(), expected), draw
        clipped = grid_masks(*args, 32, 32, "cpu")[0, 0]
        overflow += big
        differs += not torch.equal(ours, clipped)
        if not big:
            assert torch.equal(ours, clipped)  # a crop inside the image: no difference
    # P(crop taller or wider than 32 px) for area ~ U(0.5, 1), aspect ~ U(0.5, 2): 0.45
    assert abs(overflow / n - 0.45) < 4 * (0.45 * 0.55 / n) ** 0.5
    assert differs > overflow / 2  # 110 of 167 here: an offset truncated to 0 changes nothing
