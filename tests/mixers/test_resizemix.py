"""ResizeMix: the common contract; the whole paired image, resized, is pasted."""
import torch
import torch.nn.functional as F

from mixbench.mixers import ResizeMix
from tests.mixers.helpers import (check_batch_size_one, check_dtypes_and_formats,
                                  check_mask_identity, check_output, check_reproducible,
                                  make_batch, seeded)


def pasted_reference(x, out):
    """Build the pasted component by hand with F.interpolate, one sample at a time."""
    ref = x.clone()
    for i, m in enumerate(out.mask[:, 0]):
        rows = (m == 0).any(1).nonzero().flatten()
        cols = (m == 0).any(0).nonzero().flatten()
        small = F.interpolate(x[out.index[i]][None], size=(len(rows), len(cols)), mode="nearest")
        ref[i, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = small[0]
    return ref


def test_contract_and_whole_resized_image_pasted():
    x, y = make_batch(b=8, h=32, w=32)
    for lam_mode, pairing in (("batch", "random"), ("elem", "random"), ("pair", "reverse")):
        out = check_output(ResizeMix(lam_mode=lam_mode, pairing=pairing, generator=seeded(0)),
                           x, y, mask_method=True)
        check_mask_identity(out, x, second=pasted_reference(x, out))


def test_tau_range_and_lambda():
    x, y = make_batch(b=64, h=40, w=40)
    raw = ResizeMix(lam_mode="elem", correct_lam=False, generator=seeded(1))(x, y)
    out = ResizeMix(lam_mode="elem", generator=seeded(1))(x, y)
    tau = torch.sqrt(1 - raw.lam.double())
    assert bool(((tau >= 0.1) & (tau <= 0.8)).all())
    side = (40 * tau).floor()
    torch.testing.assert_close(out.lam.double(), 1 - side ** 2 / 1600)


def test_use_alpha_draws_tau_from_beta_inside_scope():
    x, y = make_batch(b=200, h=8, w=8)
    raw = ResizeMix(alpha=2.0, use_alpha=True, correct_lam=False, lam_mode="elem",
                    generator=seeded(2))(x, y)
    tau = torch.sqrt(1 - raw.lam.double())
    assert bool(((tau >= 0.1 - 1e-9) & (tau <= 0.8 + 1e-9)).all())


def test_reproducible_dtypes_and_batch_of_one():
    x, y = make_batch()
    check_reproducible(ResizeMix(), x, y)
    check_batch_size_one(ResizeMix())
    check_dtypes_and_formats(ResizeMix(), mask_identity=False)
