"""GridMix: the common contract and grid geometry (holes aligned on a regular grid)."""
import functools

import torch

from mixbench.mixers import GridMix
from mixbench.mixers.gridmix import grid_masks
from tests.mixers.helpers import check_output, check_standard, make_batch, seeded


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(GridMix, alpha=1.0), mask_method=True, alpha=0.2)


def one(v, dtype=torch.float64):
    return torch.tensor([v], dtype=dtype)


def test_grid_geometry_by_hand():
    # 32x32 image, whole image as crop (area 1, aspect 1, origin 0), 4 cells of 8 px, lam = 0.75:
    # holes of int(8 * 0.5) = 4 px at the top-left of every cell.
    mask = grid_masks(one(0.75), one(4), one(1.0), one(1.0), one(1.0), one(0.0), one(0.0),
                      32, 32, "cpu")[0, 0]
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
        assert torch.equal(hole[rows][:, cols],
                           hole.any(1)[rows][:, None] & hole.any(0)[cols][None, :])
        assert torch.equal(hole, hole.any(1)[:, None] & hole.any(0)[None, :])
        # runs start at a fixed period
        starts = cols[torch.cat([torch.tensor([True]), cols.diff() > 1])]
        if starts.numel() > 2:
            assert len(set(starts.diff().tolist())) == 1


def test_n_holes_range_is_honoured():
    x, y = make_batch(b=64, h=64, w=64)
    out = GridMix(alpha=1.0, n_holes=3, cut_area_ratio=1.0, cut_aspect_ratio=1.0,
                  lam_mode="elem", generator=seeded(1))(x, y)
    for m in out.mask[:, 0]:
        cols = (m == 0).any(0).nonzero().flatten()
        runs = 1 + int((cols.diff() > 1).sum()) if cols.numel() else 0
        assert runs in (3, 4)  # 3 cells across the crop (a 4th may start at its edge)
