"""CutMix: the common contract, box geometry, lambda correction, and bit-equality with timm
(pairing=reverse, batch/pair/elem modes) and torchvision (pairing=roll)."""

import functools

import numpy as np
import pytest
import torch
from mbtest.mixers import check_inplace, check_mask_identity, check_output, check_standard, make_batch, seeded

from mixbench.mixers import CutMix
from mixbench.mixers.boxes import centred_box, cut_size


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(CutMix, alpha=1.0), mask_method=True, alpha=0.2)


def test_mask_is_one_box_of_the_right_size():
    x, y = make_batch(b=4, h=32, w=32)
    for seed in range(20):
        out = check_output(CutMix(alpha=1.0, generator=seeded(seed)), x, y, mask_method=True)
        hole = out.mask[0, 0] == 0
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        if rows.numel():  # the hole is a full rectangle
            assert hole[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
            assert hole.sum() == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert torch.equal(out.mask, out.mask[:1].expand_as(out.mask))  # one box per batch


def test_box_size_and_clipping():
    lam = torch.tensor([0.75, 0.75, 0.0, 1.0], dtype=torch.float64)
    assert cut_size(lam, 16).tolist() == [8, 8, 16, 0]
    y1, y2, x1, x2 = centred_box(
        torch.tensor([8, 0, 3, 5]), torch.tensor([8, 15, 3, 5]), cut_size(lam, 16), cut_size(lam, 16), 16, 16
    )
    assert (y1.tolist(), y2.tolist()) == ([4, 0, 0, 5], [12, 4, 11, 5])
    assert (x1.tolist(), x2.tolist()) == ([4, 11, 0, 5], [12, 16, 11, 5])


def test_symmetric_box_span_is_one_pixel_shorter_for_odd_cuts():
    """``box_span='symmetric'``: rows ``c - cut // 2 .. c + cut // 2`` (OpenMixup
    augments/cutmix.py:68-71, the CutMix paper's code)."""
    cut = torch.tensor([5, 4, 5, 7])
    centre = torch.tensor([8, 8, 0, 15])
    exact = centred_box(centre, centre, cut, cut, 16, 16)
    symmetric = centred_box(centre, centre, cut, cut, 16, 16, span="symmetric")
    assert (exact[0].tolist(), exact[1].tolist()) == ([6, 6, 0, 12], [11, 10, 3, 16])
    assert (symmetric[0].tolist(), symmetric[1].tolist()) == ([6, 6, 0, 12], [10, 10, 2, 16])


def expected_pasted_area(size: int, span: str) -> float:
    """E[pasted area / size**2] of CutMix with alpha = 1 on a size x size image, derived from
    the formula: lam ~ U(0, 1) gives cut = floor(size sqrt(1 - lam)) = k with probability
    ((k + 1)**2 - k**2) / size**2; the centre is uniform over the pixels, rows and columns
    independent, and the clipped side from centre c is min(c + end, size) - max(c - k // 2, 0)
    with end = (k + 1) // 2 (exact) or k // 2 (symmetric)."""
    total = 0.0
    for k in range(size):
        end = (k + 1) // 2 if span == "exact" else k // 2
        side = np.mean([min(c + end, size) - max(c - k // 2, 0) for c in range(size)])
        total += ((k + 1) ** 2 - k**2) / size**2 * (side / size) ** 2
    return total


@pytest.mark.parametrize("span", ["exact", "symmetric"])
def test_mean_pasted_area_follows_the_box_span(span):
    x, y = make_batch(b=20000, c=1, h=16, w=16)
    out = CutMix(alpha=1.0, lam_mode="elem", box_span=span, generator=seeded(7))(x, y)
    area = 1 - out.lam.double()
    se = float(area.std()) / len(area) ** 0.5
    other = expected_pasted_area(16, "symmetric" if span == "exact" else "exact")
    assert abs(float(area.mean()) - expected_pasted_area(16, span)) < 4 * se
    assert abs(expected_pasted_area(16, span) - other) > 12 * se  # the test tells them apart
    # one box for the whole batch (the fast path) uses the same span
    batch = CutMix(alpha=1.0, box_span=span)
    fixed_draws(batch, [0.5] * 4, [5], [5])
    hole = batch(*make_batch(b=4)).mask[0, 0] == 0
    side = 11 if span == "exact" else 10  # cut = int(16 * sqrt(0.5)) = 11, centre 5
    assert hole.sum() == side * side and hole[0, 0] and not hole[side, side]


def test_correct_lam_reports_the_clipped_area():
    x, y = make_batch(b=8)
    raw = CutMix(alpha=1.0, correct_lam=False, lam_mode="elem", generator=seeded(4))(x, y)
    fixed = CutMix(alpha=1.0, lam_mode="elem", generator=seeded(4))(x, y)
    assert torch.equal(raw.inputs, fixed.inputs)
    assert torch.equal(fixed.lam, fixed.mask.mean((1, 2, 3)))
    assert not torch.equal(raw.lam, fixed.lam)  # some boxes were clipped or rounded
    assert bool((fixed.lam >= raw.lam - 1e-6).all())  # clipping only removes pasted area


def test_elem_mode_gives_each_sample_its_own_box():
    x, y = make_batch(b=8, h=32, w=32)
    out = check_output(CutMix(alpha=1.0, lam_mode="elem", generator=seeded(0)), x, y)
    check_mask_identity(out, x)
    assert len({tuple(m.flatten().tolist()) for m in out.mask}) > 4


def fixed_draws(mixer, lam, cy, cx):
    """Fix our lambda and box centres (the peers get the same values patched in)."""
    mixer.sample_lam = lambda index: torch.as_tensor(lam, dtype=torch.float64)
    mixer.sample_centres = lambda x, index: (torch.as_tensor(cy), torch.as_tensor(cx))


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_equals_timm_with_reverse_pairing(monkeypatch, mode):
    from timm.data import Mixup as TimmMixup

    b, h = 6, 16
    x, y = make_batch(b=b, h=h, w=h)
    g = np.random.default_rng(0)
    lam = g.beta(1.0, 1.0, b).astype(np.float32).astype(np.float64)  # timm keeps float32
    cy, cx = g.integers(0, h, b), g.integers(0, h, b)
    if mode == "batch":
        lam, cy, cx = np.full(b, lam[0]), np.full(b, cy[0]), np.full(b, cx[0])
    if mode == "pair":  # partners i and B-1-i share lambda and box
        lam, cy, cx = (np.concatenate([v[:3], v[:3][::-1]]) for v in (lam, cy, cx))
    mixer = CutMix(alpha=1.0, pairing="reverse", lam_mode=mode)
    fixed_draws(mixer, lam, cy, cx)
    ours = mixer(x, y)

    n = {"batch": 1, "pair": 3, "elem": 6}[mode]
    monkeypatch.setattr(np.random, "beta", lambda a, b_, size=None: lam[0] if size is None else lam[:size])
    centres = iter(np.stack([cy[:n], cx[:n]], 1).flatten().tolist())  # cy, cx per box
    monkeypatch.setattr(np.random, "randint", lambda lo, hi=None, size=None: next(centres))
    timm = TimmMixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode=mode, label_smoothing=0.0, num_classes=5)
    x_timm, target = timm(x.clone(), y.clone())
    assert torch.equal(ours.inputs, x_timm)
    torch.testing.assert_close(ours.target(5), target)


def test_equals_torchvision_with_roll_pairing(monkeypatch):
    from torchvision.transforms import v2

    x, y = make_batch(b=6, h=16, w=16)
    # torchvision's box spans [c - half, c + half) with half = int(0.5 * sqrt(1 - lam) * W):
    # the same box as ours whenever int(W * sqrt(1 - lam)) is even (here 8), clipped or not.
    for lam, cy, cx in ((0.7, 9, 4), (0.7, 1, 14), (0.72, 15, 0)):
        mixer = CutMix(alpha=1.0, pairing="roll")
        fixed_draws(mixer, [lam] * 6, [cy] * 6, [cx] * 6)
        ours = mixer(x, y)
        tv = v2.CutMix(alpha=1.0, num_classes=5)
        monkeypatch.setattr(tv._dist, "sample", lambda shape=(), lam=lam: torch.tensor(lam))
        draws = iter([cx, cy])  # torchvision draws r_x, then r_y
        monkeypatch.setattr(torch, "randint", lambda high, size, draws=draws: torch.tensor([next(draws)]))
        x_tv, target = tv(x.clone(), y.clone())
        monkeypatch.undo()
        assert torch.equal(ours.inputs, x_tv)
        torch.testing.assert_close(ours.target(5), target)


def test_inplace_writes_the_same_result_into_the_input():
    check_inplace(functools.partial(CutMix, alpha=1.0))


def test_elem_mode_empty_and_full_boxes_inplace_and_channels_last():
    x, y = make_batch(b=6, h=16, w=16)
    lam, cy, cx = [1.0, 0.0, 0.5, 0.7, 0.3, 0.9], [3, 8, 0, 15, 7, 9], [5, 8, 15, 0, 7, 2]

    def mixed(inputs, **kw):
        mixer = CutMix(alpha=1.0, lam_mode="elem", generator=seeded(3), **kw)
        fixed_draws(mixer, lam, cy, cx)
        return mixer(inputs, y)

    out = mixed(x)
    check_mask_identity(out, x)
    assert torch.equal(out.inputs[0], x[0])  # lam 1: no box
    assert torch.equal(out.inputs[1], x[out.index[1]])  # lam 0: the whole image
    assert out.lam[0] == 1 and out.lam[1] == 0
    x_in = x.clone()
    out_in = mixed(x_in, inplace=True)
    assert torch.equal(out_in.inputs, out.inputs) and torch.equal(x_in, out.inputs)
    out_cl = mixed(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(out_cl.inputs, out.inputs)
    assert out_cl.inputs.is_contiguous(memory_format=torch.channels_last)
