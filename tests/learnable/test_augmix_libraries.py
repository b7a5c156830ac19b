"""AugMix against timm (``timm.data.auto_augment``) and torchvision (``transforms.v2.AugMix``),
where their semantics coincide with the official code's (and so ours): single ops at matched
parameters, and whole AugMix images replayed from the draws the library made (the chains must
be equal, the final mix differs only by the library's uint8 truncation). What differs by
construction is listed in docs/learnable.md (AugMix: against timm and torchvision)."""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from mbtest.augmix import chw, timm_replay, torchvision_replay
from PIL import Image
from timm.data import auto_augment
from timm.data.auto_augment import AugmentOp

from mixbench.models.classifiers.augmix import OP_FUNCTIONS, SIGNED, mix_chains, run_chains

#: timm's affine ops made the official ones: bilinear (timm draws bilinear or bicubic) and
#: zero fill (timm fills with 128)
TIMM_HPARAMS = {"interpolation": Image.BILINEAR, "img_mean": 0, "magnitude_std": 0}
#: timm ops whose magnitude M (0..10) gives the official parameter at level M: ours by name
TIMM_SAME_SCALE = {
    "AutoContrast": "autocontrast",
    "Equalize": "equalize",
    "PosterizeIncreasing": "posterize",  # 4 - int(M / 10 * 4) bits
    "SolarizeIncreasing": "solarize",  # threshold 256 - int(M / 10 * 256)
    "ShearX": "shear_x",  # M / 10 * 0.3
    "ShearY": "shear_y",
    "Color": "color",  # M / 10 * 1.8 + 0.1 (timm's AugMix uses the *Increasing ones)
    "Contrast": "contrast",
    "Brightness": "brightness",
    "Sharpness": "sharpness",
}


def images(seed, n, channels=3, size=(16, 20)):
    """n random 8-bit images (H, W, C) or (H, W) for one channel, half of them low-contrast."""
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        arr = rng.randint(0, 256, (*size, channels)) if i % 2 else rng.rand(*size, channels) * 120 + 40
        out.append(arr.astype(np.uint8)[..., 0] if channels == 1 else arr.astype(np.uint8))
    return out


def ours(name, arr, level):
    """Our batched op on one (H, W[, C]) uint8 array at the signed ``level``."""
    x = torch.from_numpy(arr.reshape(*arr.shape[:2], -1)).permute(2, 0, 1)[None].float()
    out = OP_FUNCTIONS[name](x, torch.tensor([level], dtype=torch.float64))[0]
    return out.permute(1, 2, 0).numpy().astype(np.uint8).reshape(arr.shape)


def solarize_level(threshold):
    """Our level whose solarize threshold 256 - int(25.6 l) is torchvision's ``threshold``
    (``image >= threshold`` promotes to float32)."""
    return (256 - math.ceil(float(torch.tensor(threshold, dtype=torch.float32))) + 0.5) / 25.6


def timm_op(monkeypatch, name, magnitude, negate, hparams=TIMM_HPARAMS):
    """timm's ``AugmentOp(name)`` at a fixed ``magnitude``, its random sign flip forced."""
    monkeypatch.setattr(auto_augment, "_randomly_negate", lambda v: -v if negate else v)
    return AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=hparams)


@pytest.mark.parametrize("channels", [3, 1])
def test_ops_equal_timm_at_the_same_magnitude(monkeypatch, channels):
    # pixel for pixel; shear's coefficient is M / 10 * 0.3 in timm and M * 0.3 / 10 here
    # (the official order), which can differ in the last bit, never enough here to move a
    # truncated bilinear value
    rng = np.random.RandomState(10 + channels)
    for timm_name, name in TIMM_SAME_SCALE.items():
        for i, arr in enumerate(images(channels, 8, channels)):
            magnitude, negate = float(rng.uniform(0.05, 10)), bool(i % 2)
            got = ours(name, arr, -magnitude if negate and name in SIGNED else magnitude)
            ref = np.asarray(timm_op(monkeypatch, timm_name, magnitude, negate)(Image.fromarray(arr)))
            np.testing.assert_array_equal(got, ref, err_msg=f"{timm_name} {i} {magnitude}")


def test_integer_rotations_and_translations_equal_timm(monkeypatch):
    # timm rotates by M / 10 * 30 degrees (a float), the official code by int(3 l): equal at
    # integer M (3 M degrees exactly), our level M + 0.1. timm's TranslateX/Y move by
    # M / 10 * translate_const pixels (a float); with translate_const 10 and integer M that
    # is M pixels, the official int(l W / 30) at l = (M + 0.5) 30 / W
    for arr in images(0, 4) + images(1, 2, channels=1):
        h, w = arr.shape[:2]
        for magnitude in range(1, 11):
            negate = magnitude % 2 == 0
            sign = -1 if negate else 1
            rot = timm_op(monkeypatch, "Rotate", magnitude, negate)(Image.fromarray(arr))
            np.testing.assert_array_equal(ours("rotate", arr, sign * (magnitude + 0.1)), np.asarray(rot))
            hparams = {**TIMM_HPARAMS, "translate_const": 10}
            for timm_name, name, size in (("TranslateX", "translate_x", w), ("TranslateY", "translate_y", h)):
                if magnitude >= size:
                    continue
                ref = timm_op(monkeypatch, timm_name, magnitude, negate, hparams)(Image.fromarray(arr))
                level = sign * (magnitude + 0.5) * 30 / size
                np.testing.assert_array_equal(ours(name, arr, level), np.asarray(ref), err_msg=timm_name)


def test_timm_augmix_replayed_through_our_chains_and_mix():
    # timm's AugMixAugment on the ops whose magnitudes are on the official scale (bilinear,
    # zero fill): every chain it made is made pixel for pixel by run_chains from the ops and
    # levels it drew, and its image is our float mix of those chains with its weights,
    # truncated twice: timm sums the chains in float32, truncates to uint8, then
    # Image.blend(x, mix, m) truncates again, so 0 <= ours - timm < 1 + m
    hparams = {**TIMM_HPARAMS, "magnitude_std": float("inf")}  # M ~ U(0, 3), as augment_and_mix
    ops = tuple(TIMM_SAME_SCALE.values())
    np.random.seed(0)
    auto_augment.random.seed(0)
    used = set()
    for arr in images(2, 12):
        replay = timm_replay(arr, TIMM_SAME_SCALE, hparams)
        x = chw(arr)
        chains = run_chains(x.expand(3, -1, -1, -1), ops, *replay.draws(ops))
        torch.testing.assert_close(chains, torch.stack(replay.outputs), atol=0, rtol=0)
        gap = mix_chains(x, chains, replay.weights, replay.m) - replay.result
        assert gap.min() >= -1e-3 and gap.max() < 1 + float(replay.m) + 1e-3
        used |= {n for c in replay.chains for n, _ in c}
    assert used == set(ops)  # every op was replayed


def posterize_level(bits):
    """Our level whose posterize keeps ``bits`` bits (4 - int(0.4 l))."""
    return min(10.0, (4 - bits + 0.5) / 0.4)


def tv_array(out, shape):
    return out.permute(1, 2, 0).numpy().reshape(shape)


def test_tonal_ops_equal_torchvision_at_matched_parameters():
    # torchvision's Posterize keeps `bits` bits, Solarize inverts at or above the threshold t
    # compared in float32 (ours: the integer threshold ceil(float32(t))), Equalize is
    # Pillow's; AutoContrast is computed in float and rounded where Pillow truncates: one grey
    # level at most
    for arr in images(3, 6) + images(4, 4, channels=1):
        x = torch.from_numpy(arr.reshape(*arr.shape[:2], -1)).permute(2, 0, 1)
        np.testing.assert_array_equal(ours("equalize", arr, 0.0), tv_array(TF.equalize(x), arr.shape))
        diff = ours("autocontrast", arr, 0.0).astype(int) - tv_array(TF.autocontrast(x), arr.shape)
        assert np.abs(diff).max() <= 1
        for bits in range(5):
            ref = tv_array(TF.posterize(x, bits), arr.shape)
            np.testing.assert_array_equal(ours("posterize", arr, posterize_level(bits)), ref)
        for k in range(10):  # AugMix's bins: threshold 255 (1 - k / 9)
            t = 255.0 * float(torch.linspace(1.0, 0.0, 10)[k])
            ref = tv_array(TF.solarize(x, t), arr.shape)
            np.testing.assert_array_equal(ours("solarize", arr, solarize_level(t)), ref)


def test_integer_translations_and_brightness_equal_torchvision():
    # torchvision translates by int(magnitude) pixels (its positive direction is Pillow's
    # negative one; the sign is drawn symmetrically) and brightness scales by 1 + magnitude:
    # the official ops exactly at those parameters
    for arr in images(5, 4):
        x = torch.from_numpy(arr).permute(2, 0, 1)
        h, w = arr.shape[:2]
        for pixels in (-5, -1, 2, 6):
            for dx, dy, name, size in ((pixels, 0, "translate_x", w), (0, pixels, "translate_y", h)):
                ref = TF.affine(x, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0])
                level = -math.copysign((abs(pixels) + 0.5) * 30 / size, pixels)
                np.testing.assert_array_equal(ours(name, arr, level), ref.permute(1, 2, 0).numpy())
        for factor in (0.2, 0.55, 1.0, 1.9):
            ref = TF.adjust_brightness(x, factor).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(ours("brightness", arr, (factor - 0.1) / 0.18), ref)


def test_torchvision_augmix_replayed_through_our_chains_and_mix():
    # torchvision's AugMix on its tonal ops Equalize, Posterize, Solarize (AutoContrast is
    # left out: its one grey level of rounding grows through a later posterize): the chains
    # it made are ours at the matched levels pixel for pixel, and its image is our mix
    # (1 - m) x + m sum_i w_i chain_i of its chains with its Dirichlet weights, truncated to
    # uint8 once: 0 <= ours - torchvision < 1
    levels = {
        "Equalize": ("equalize", lambda _: 0.0),
        "Posterize": ("posterize", lambda magnitude: posterize_level(int(magnitude))),
        "Solarize": ("solarize", lambda magnitude: solarize_level(255.0 * magnitude)),
    }
    ops = ("equalize", "posterize", "solarize")
    torch.manual_seed(0)
    used = set()
    for arr in images(6, 12):
        x8 = torch.from_numpy(arr).permute(2, 0, 1)
        replay = torchvision_replay(x8, levels)
        x = x8.float()
        chains = run_chains(x.expand(3, -1, -1, -1), ops, *replay.draws(ops))
        torch.testing.assert_close(chains, torch.stack(replay.outputs), atol=0, rtol=0)
        gap = mix_chains(x, chains, replay.weights, replay.m) - replay.result
        assert gap.min() >= -1e-3 and gap.max() < 1 + 1e-3
        used |= {n for c in replay.chains for n, _ in c}
    assert used == set(ops)


def test_torchvision_warps_and_enhancers_round_where_pillow_truncates():
    # the same maps and factors, computed differently: torchvision's bilinear warp
    # (grid_sample) and its enhancers (float blends with a float grey) round where Pillow
    # truncates, so inside the image they are ours or one grey level above; at the border
    # grid_sample blends the fill into the pixel where Pillow takes it or leaves it whole,
    # which no tolerance covers (left out here)
    bilinear = TF.InterpolationMode.BILINEAR
    warps = {
        "rotate": (5.1, lambda t: TF.rotate(t, 15.0, interpolation=bilinear)),  # int(3 * 5.1) = 15
        "shear_x": (
            5.0,
            lambda t: TF.affine(
                t, 0.0, [0, 0], 1.0, [math.degrees(math.atan(0.15)), 0.0], bilinear, center=[0, 0]
            ),
        ),
        "shear_y": (
            5.0,
            lambda t: TF.affine(
                t, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(0.15))], bilinear, center=[0, 0]
            ),
        ),
    }
    x8 = torch.from_numpy(np.stack(images(7, 4, size=(20, 20)))).permute(0, 3, 1, 2)
    white = torch.full((1, 3, 20, 20), 255, dtype=torch.uint8)
    for name, (level, warp) in warps.items():
        got = OP_FUNCTIONS[name](x8.float(), torch.full((4,), level, dtype=torch.float64))
        gap = warp(x8).float() - got
        inside = (warp(white) == 255) & (OP_FUNCTIONS[name](white.float(), torch.tensor([level])) == 255)
        assert inside.float().mean() > 0.5 and gap[inside.expand_as(gap)].min() >= 0
        assert gap[inside.expand_as(gap)].max() == 1 and gap.abs().max() > 1, name
    enhancers = {
        "color": TF.adjust_saturation,
        "contrast": TF.adjust_contrast,
        "sharpness": TF.adjust_sharpness,
    }
    for name, enhance in enhancers.items():
        for factor in (0.3, 0.7, 1.2, 1.8):
            got = OP_FUNCTIONS[name](x8.float(), torch.full((4,), (factor - 0.1) / 0.18, dtype=torch.float64))
            assert (enhance(x8, factor).float() - got).abs().max() <= 1, (name, factor)
