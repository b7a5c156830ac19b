"""FMix: the common contract, binary masks with mean exactly lambda, low-frequency masks,
soft edges."""

import functools

import numpy as np
import pytest
import torch
from mbtest.mixers import check_mask_identity, check_output, check_standard, make_batch, seeded

from mixbench.mixers import FMix
from mixbench.mixers.fmix import binarise, fourier_noise, pixel_count


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(FMix, alpha=1.0), mask_method=True, alpha=0.2)


def test_mask_is_binary_with_mean_exactly_the_rounded_lambda():
    x, y = make_batch(b=16, h=32, w=32)
    raw = FMix(alpha=1.0, lam_mode="elem", correct_lam=False, generator=seeded(1))(x, y)
    out = check_output(FMix(alpha=1.0, lam_mode="elem", generator=seeded(1)), x, y)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(
        out.mask.mean((1, 2, 3)), torch.round(raw.lam.double() * 1024).float() / 1024, rtol=0, atol=0
    )
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


def official_reference_noise(normals: np.ndarray, h: int, w: int, decay: float) -> np.ndarray:
    """The official FMix noise (ecs-vlc/FMix fmix.py: fftfreqnd, get_spectrum,
    make_low_freq_image) written from its description with NumPy: a (1, h, W', 2) normal
    parameter array scaled per frequency, then ``spectrum[:, 0] + 1j * spectrum[:, 1]``
    and ``irfftn(., (h, w))``. Rows 0 and 1 of the parameters are ``normals``; the other
    rows are filled with values that must not matter."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1 + w % 2]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay
    param = np.full((1, h, fx.shape[0], 2), 123.0)
    param[0, :2] = normals
    spectrum = scale[None, :, :, None] * param
    spectrum = spectrum[:, 0] + 1j * spectrum[:, 1]
    return np.real(np.fft.irfftn(spectrum, (h, w)))[0]


@pytest.mark.parametrize("h, w", [(32, 32), (16, 24), (15, 9)])
def test_official_spectrum_bug_equals_the_official_noise(h, w):
    g = seeded(0)
    ours = fourier_noise(1, h, w, 3.0, g, official_spectrum_bug=True)[0]
    g = seeded(0)
    normals = torch.randn(1, 2, w // 2 + 1 + w % 2, 2, dtype=torch.float64, generator=g)
    expected = official_reference_noise(normals[0].numpy(), h, w, 3.0)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_official_spectrum_has_only_column_frequencies_zero_and_one():
    noise = fourier_noise(200, 32, 32, 3.0, seeded(1), official_spectrum_bug=True)
    energy = torch.fft.fft2(noise).abs().square().sum((0, 1))  # by column frequency
    assert float(energy[2:31].sum()) < 1e-12 * float(energy.sum())
    isotropic = fourier_noise(200, 32, 32, 3.0, seeded(1))
    energy = torch.fft.fft2(isotropic).abs().square().sum((0, 1))
    assert float(energy[2:31].sum()) > 1e-3 * float(energy.sum())


def test_random_rounding_takes_ceil_or_floor_half_the_time():
    """The official binarise_mask: ceil(lam N) if random() > 0.5 else floor(lam N)."""
    lam = torch.full((4000,), 0.31, dtype=torch.float64)
    near = pixel_count(lam, 35)  # 10.85
    assert bool((near == 11).all())
    rand = pixel_count(lam, 35, "random", seeded(2))
    ups = int((rand == 11).sum())
    assert int(((rand == 10) | (rand == 11)).sum()) == 4000
    assert abs(ups - 2000) < 4 * 1000**0.5
    x, y = make_batch(b=4, h=8, w=8)
    out = FMix(
        alpha=1.0, rounding="random", official_spectrum_bug=True, correct_lam=False, generator=seeded(3)
    )(x, y)
    count = out.mask[0].sum()
    assert count in (torch.floor(out.lam[0] * 64), torch.ceil(out.lam[0] * 64))
