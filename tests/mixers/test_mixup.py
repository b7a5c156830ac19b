"""Mixup: the common contract, Beta(alpha, alpha) lambda, and bit-equality with timm and
torchvision given the same lambda."""

import functools

import numpy as np
import pytest
import torch
from mbtest.mixers import check_inplace, check_lerp_identity, check_output, check_standard, make_batch, seeded

from mixbench.mixers import Mixup, base


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(Mixup, alpha=1.0), mask_method=False, alpha=0.4)


@pytest.mark.parametrize("lam_mode", ["batch", "elem", "pair"])
def test_inputs_are_the_lambda_interpolation(lam_mode):
    x, y = make_batch()
    out = check_output(Mixup(alpha=1.0, lam_mode=lam_mode, generator=seeded(3)), x, y)
    check_lerp_identity(out, x)
    if lam_mode == "batch":
        assert len(set(out.lam.tolist())) == 1
    else:
        assert len(set(out.lam.tolist())) > 1


def test_alpha_zero_and_prob_zero_do_not_mix():
    x, y = make_batch()
    for mixer in (Mixup(alpha=0.0), Mixup(alpha=1.0, prob=0.0)):
        out = mixer(x, y)
        assert torch.equal(out.inputs, x) and out.lam.eq(1).all()


def test_prob_mixes_about_that_fraction_of_batches():
    x, y = make_batch(b=2, h=4, w=4)
    mixer = Mixup(alpha=1.0, prob=0.3, generator=seeded(0))
    mixed = sum(bool(mixer(x, y).lam.lt(1).all()) for _ in range(400))
    assert 90 <= mixed <= 150  # Binomial(400, 0.3): mean 120, sd 9.2


def float32_exact_beta(monkeypatch):
    """Make our Beta draws float32-representable: timm stores per-sample lambdas as float32
    and forms ``1 - lam`` in float32, which then rounds exactly as our float64 ``1 - lam``."""
    real = base.beta_sample
    monkeypatch.setattr(base, "beta_sample", lambda *args: real(*args).float().double())


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_equals_timm_with_reverse_pairing(monkeypatch, mode, dtype, inplace):
    """Bit for bit, also in half precision: each weight multiplies in float32 (the
    lambda is not rounded to the batch's dtype), each product is rounded to it. timm's
    per-sample label weights are rounded to the batch's dtype, ours stay float32 (the
    weights the images were mixed with): the targets agree to that rounding."""
    from timm.data import Mixup as TimmMixup

    float32_exact_beta(monkeypatch)
    x, y = make_batch(b=6)
    x = x.to(dtype)
    ours = Mixup(alpha=1.0, pairing="reverse", lam_mode=mode, inplace=inplace, generator=seeded(5))(
        x.clone(), y
    )
    # timm draws lambda with np.random.beta: one per batch, per pair (first half) or per
    # sample. Hand it ours.
    lam = ours.lam.double().numpy()
    drawn = {"batch": lam[0], "pair": lam[:3], "elem": lam}[mode]
    monkeypatch.setattr(np.random, "beta", lambda a, b, size=None: drawn)
    timm = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode=mode, label_smoothing=0.0, num_classes=5)
    x_timm, target = timm(x.clone(), y.clone())
    assert torch.equal(ours.inputs, x_timm)
    eps = torch.finfo(dtype).eps if mode != "batch" else 0.0
    torch.testing.assert_close(ours.target(5), target.float(), atol=eps + 1e-6, rtol=0)


def test_equals_torchvision_with_roll_pairing(monkeypatch):
    from torchvision.transforms import v2

    float32_exact_beta(monkeypatch)
    x, y = make_batch(b=6)
    ours = Mixup(alpha=1.0, pairing="roll", generator=seeded(7))(x, y)
    tv = v2.MixUp(alpha=1.0, num_classes=5)
    lam = float(ours.lam.double()[0])
    # torchvision draws float(Beta.sample()) once per batch: give it our lambda.
    monkeypatch.setattr(tv._dist, "sample", lambda shape=(): torch.tensor(lam, dtype=torch.float64))
    x_tv, target = tv(x.clone(), y.clone())
    assert torch.equal(ours.inputs, x_tv)
    torch.testing.assert_close(ours.target(5), target)


def test_inplace_writes_the_same_result_into_the_input():
    check_inplace(functools.partial(Mixup, alpha=1.0))
