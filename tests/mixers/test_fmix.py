"""FMix: the common contract, binary masks with mean exactly lambda, low-frequency masks,
soft edges."""
import functools

import torch

from mixbench.mixers import FMix
from mixbench.mixers.fmix import binarise, fourier_noise
from tests.mixers.helpers import check_mask_identity, check_output, check_standard, make_batch, seeded


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(FMix, alpha=1.0), mask_method=True, alpha=0.2)


def test_mask_is_binary_with_mean_exactly_the_rounded_lambda():
    x, y = make_batch(b=16, h=32, w=32)
    raw = FMix(alpha=1.0, lam_mode="elem", correct_lam=False, generator=seeded(1))(x, y)
    out = check_output(FMix(alpha=1.0, lam_mode="elem", generator=seeded(1)), x, y)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out.mask.mean((1, 2, 3)),
                               torch.round(raw.lam.double() * 1024).float() / 1024, rtol=0, atol=0)
    assert (out.lam - raw.lam).abs().max() <= 0.5 / 1024 + 1e-7


def low_frequency_share(mask: torch.Tensor, cutoff: float = 0.125) -> float:
    """Share of the (mean-removed) spectral energy at |f| < cutoff cycles/pixel."""
    m = mask.double() - mask.double().mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(m).abs() ** 2
    h, w = m.shape[-2:]
    f = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2)
    return float(power[..., f < cutoff].sum() / power.sum())


def test_mask_spectrum_is_low_frequency():
    g = seeded(0)
    lam = torch.full((32,), 0.5, dtype=torch.float64)
    masks = binarise(fourier_noise(32, 32, 32, 3.0, g), lam)[:, 0]
    shuffled = masks.flatten(1)[:, torch.randperm(32 * 32, generator=g)].view_as(masks)
    assert low_frequency_share(masks) > 0.8  # a few blobs
    assert low_frequency_share(shuffled) < 0.1  # the same pixels scattered: white noise
    smoother = binarise(fourier_noise(32, 32, 32, 5.0, seeded(0)), lam)[:, 0]
    assert low_frequency_share(smoother) >= low_frequency_share(masks)


def test_soft_edges_ramp_between_zero_and_one():
    x, y = make_batch(b=8, h=16, w=16)
    out = check_output(FMix(alpha=1.0, max_soft=0.1, lam_mode="elem", generator=seeded(2)), x, y)
    check_mask_identity(out, x)
    values = out.mask.unique()
    assert ((values > 0) & (values < 1)).any()


def test_batch_mode_uses_one_mask():
    x, y = make_batch()
    out = FMix(alpha=1.0, generator=seeded(3))(x, y)
    assert torch.equal(out.mask, out.mask[:1].expand_as(out.mask))
