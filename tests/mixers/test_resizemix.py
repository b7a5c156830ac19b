"""ResizeMix: the common contract; the whole paired image, resized, is pasted."""

import torch
import torch.nn.functional as F
from mbtest.mixers import (
    check_batch_size_one,
    check_dtypes_and_formats,
    check_mask_identity,
    check_output,
    check_reproducible,
    make_batch,
    seeded,
)

from mixbench.mixers import ResizeMix


def pasted_reference(x, out):
    """Build the pasted component by hand with F.interpolate, one sample at a time."""
    ref = x.clone()
    for i, m in enumerate(out.mask[:, 0]):
        rows = (m == 0).any(1).nonzero().flatten()
        cols = (m == 0).any(0).nonzero().flatten()
        small = F.interpolate(x[out.index[i]][None], size=(len(rows), len(cols)), mode="nearest")
        ref[i, :, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = small[0]
    return ref


def test_contract_and_whole_resized_image_pasted():
    x, y = make_batch(b=8, h=32, w=32)
    for lam_mode, pairing in (("batch", "random"), ("elem", "random"), ("pair", "reverse")):
        out = check_output(
            ResizeMix(lam_mode=lam_mode, pairing=pairing, generator=seeded(0)), x, y, mask_method=True
        )
        check_mask_identity(out, x, second=pasted_reference(x, out))


def test_tau_range_and_lambda():
    x, y = make_batch(b=64, h=40, w=40)
    raw = ResizeMix(lam_mode="elem", correct_lam=False, generator=seeded(1))(x, y)
    out = ResizeMix(lam_mode="elem", generator=seeded(1))(x, y)
    tau = torch.sqrt(1 - raw.lam.double())
    assert bool(((tau >= 0.1) & (tau <= 0.8)).all())
    side = (40 * tau).floor()
    torch.testing.assert_close(out.lam.double(), 1 - side**2 / 1600)


def test_use_alpha_draws_tau_from_beta_inside_scope():
    x, y = make_batch(b=200, h=8, w=8)
    raw = ResizeMix(alpha=2.0, use_alpha=True, correct_lam=False, lam_mode="elem", generator=seeded(2))(x, y)
    tau = torch.sqrt(1 - raw.lam.double())
    assert bool(((tau >= 0.1 - 1e-9) & (tau <= 0.8 + 1e-9)).all())


def test_reproducible_dtypes_and_batch_of_one():
    x, y = make_batch()
    check_reproducible(ResizeMix(), x, y)
    check_batch_size_one(ResizeMix())
    check_dtypes_and_formats(ResizeMix(), mask_identity=False)


def expected_pasted_area(size: int, scope, placement: str) -> float:
    """E[pasted area / size**2] for tau ~ U(scope), derived from the formula: cut =
    floor(size * tau) = k for tau in [k / size, (k + 1) / size); ``inside`` pastes k x k
    pixels; ``centred`` (OpenMixup augments/resizemix.py:45-59) spans rows
    max(c - k // 2, 0) .. min(c + k // 2, size) around a uniform pixel c, columns alike
    and independently."""
    lo, hi = scope
    total = 0.0
    for k in range(size + 1):
        p = max(0.0, min(hi, (k + 1) / size) - max(lo, k / size)) / (hi - lo)
        if placement == "inside":
            side = k
        else:
            side = sum(min(c + k // 2, size) - max(c - k // 2, 0) for c in range(size)) / size
        total += p * (side / size) ** 2
    return total


def test_centred_placement_is_openmixups_clipped_and_squeezed_box():
    x, y = make_batch(b=8, h=32, w=32)
    out = check_output(
        ResizeMix(lam_mode="elem", placement="centred", generator=seeded(2)), x, y, mask_method=True
    )
    check_mask_identity(out, x, second=pasted_reference(x, out))  # squeezed into the box
    big, labels = make_batch(b=20000, c=1, h=32, w=32)
    means = {}
    for placement in ("inside", "centred"):
        area = (
            1 - ResizeMix(lam_mode="elem", placement=placement, generator=seeded(3))(big, labels).lam.double()
        )
        se = float(area.std()) / len(area) ** 0.5
        expected = expected_pasted_area(32, (0.1, 0.8), placement)
        assert abs(float(area.mean()) - expected) < 4 * se, (placement, float(area.mean()))
        means[placement] = expected
    assert abs(means["inside"] - 0.2297) < 1e-4 and abs(means["centred"] - 0.1587) < 1e-4
