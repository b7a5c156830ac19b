"""The published RandAugment policies: FixMatch's op list as OpenMixup samples it (CIFAR-100
ViT/ConvNeXt recipes) and timm's 'rand-m9-mstd0.5-inc1' (DeiT on ImageNet). Each op is
checked against its definition on hand-built images."""

import pytest
import torch
from PIL import Image, ImageOps

from mixbench.data import FixMatchRandAugment, TimmRandAugment, build_pipeline
from mixbench.data.rand_augment import FIXMATCH_OPS, from_pil, to_pil

RA = FixMatchRandAugment()


def const(*rgb, h=6, w=7):
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).contiguous()


def test_op_list_and_ranges_are_openmixups_fixmatch_policy():
    # configs/classification/_base_/datasets/cifar100/sz224_randaug_bs100.py (OpenMixup)
    published = {
        "AutoContrast": None,
        "Brightness": (0.05, 0.95),
        "ColorTransform": (0.05, 0.95),
        "Contrast": (0.05, 0.95),
        "Equalize": None,
        "Identity": None,
        "Posterize": (4, 8),
        "Rotate": (0, 30),
        "Sharpness": (0.05, 0.95),
        "ShearX": (0, 0.3),
        "ShearY": (0, 0.3),
        "Solarize": (256, 0),
        "TranslateX": (0, 0.3),
        "TranslateY": (0, 0.3),
    }
    assert {name: spec[1] for name, spec in FIXMATCH_OPS.items()} == published
    signed = {n for n, spec in FIXMATCH_OPS.items() if spec[3]}
    assert signed == {
        "Brightness",
        "ColorTransform",
        "Contrast",
        "Sharpness",
        "Rotate",
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
    }
    assert (
        RA.num_ops,
        RA.magnitude,
        RA.magnitude_std,
        RA.total_level,
        RA.op_prob,
        RA.negate_prob,
        RA.fill,
    ) == (2, 7, 0.5, 10, 0.5, 0.5, (114, 123, 125))
    assert RA.resample == Image.BICUBIC and RA.ops == list(published)
    at7 = {n: RA.value(n, 7) for n in published}
    assert at7["Brightness"] == pytest.approx(0.68) and at7["Rotate"] == pytest.approx(21)
    assert at7["ShearX"] == pytest.approx(0.21) and at7["TranslateY"] == pytest.approx(0.21)
    assert at7["Solarize"] == pytest.approx(76.8) and at7["Posterize"] == pytest.approx(6.8)
    assert at7["Identity"] is None


def test_colour_ops_follow_their_definitions():
    img = (
        torch.stack(
            [torch.linspace(50, 100, 42).view(6, 7), torch.full((6, 7), 100.0), torch.full((6, 7), 200.0)]
        )
        .round()
        .to(torch.uint8)
    )
    out = RA.apply(img, "AutoContrast", None)
    assert out[0].min() == 0 and out[0].max() == 255 and torch.equal(out[1:], img[1:])
    assert torch.equal(RA.apply(const(100, 200, 10), "Brightness", 0.5), const(150, 255, 15))
    assert torch.equal(RA.apply(const(100, 200, 11), "Brightness", -0.5), const(50, 100, 5))
    grey = RA.apply(img, "ColorTransform", -1.0)  # factor 0: the grey image
    lum = (0.299 * img[0].float() + 0.587 * img[1].float() + 0.114 * img[2].float()).round()
    assert all(torch.equal(grey[c], lum.to(torch.uint8)) for c in range(3))
    assert torch.equal(RA.apply(img, "ColorTransform", 0.0), img)
    mean = int(lum.mean().round())
    assert torch.equal(RA.apply(img, "Contrast", -1.0), torch.full_like(img, mean))
    doubled = (2 * img.float() - mean).clamp(0, 255).to(torch.uint8)
    assert torch.equal(RA.apply(img, "Contrast", 1.0), doubled)
    assert torch.equal(RA.apply(img, "Identity", None), img)
    assert torch.equal(RA.apply(const(255, 131, 7), "Posterize", 6.8), const(252, 128, 4))
    assert torch.equal(RA.apply(const(127, 128, 200), "Solarize", 128), const(127, 127, 55))


def test_equalize_matches_pil():
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(3, 16, 16, generator=g) ** 3 * 180).to(torch.uint8)
    expected = from_pil(ImageOps.equalize(to_pil(img)))
    assert torch.equal(RA.apply(img, "Equalize", None), expected)


def test_sharpness_blends_with_the_smooth_filter():
    img = torch.zeros(3, 5, 5, dtype=torch.uint8)
    img[:, 2, 2] = 130
    smooth = RA.apply(img, "Sharpness", -1.0)  # factor 0: the SMOOTH-filtered image
    assert smooth[0, 2, 2] == 50 and smooth[0, 1, 2] == smooth[0, 3, 3] == 10
    assert smooth[0, 0, 0] == 0 and smooth.sum() == 3 * (50 + 8 * 10)
    sharp = RA.apply(img, "Sharpness", 0.5)  # 1.5 img - 0.5 smooth
    assert sharp[0, 2, 2] == 170 and sharp[0, 1, 1] == 0
    assert torch.equal(RA.apply(img, "Sharpness", 0.0), img)


def test_geometric_ops_move_pixels_and_fill():
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, 6, 7), dtype=torch.uint8, generator=g)
    fill = torch.tensor([114, 123, 125], dtype=torch.uint8).view(3, 1)
    right = RA.apply(img, "TranslateX", 2 / 7)  # 2 px right
    assert torch.equal(right[:, :, 2:], img[:, :, :-2]) and torch.equal(right[:, :, 0], fill.expand(3, 6))
    up = RA.apply(img, "TranslateY", -2 / 6)  # 2 px up
    assert torch.equal(up[:, :-2], img[:, 2:]) and torch.equal(up[:, -1], fill.expand(3, 7))
    sheared = RA.apply(img, "ShearX", 1.0)  # row y slides y px right
    for y in range(6):
        assert torch.equal(sheared[:, y, y:], img[:, y, : 7 - y])
        assert torch.equal(sheared[:, y, :y], fill.expand(3, y))
    sheared = RA.apply(img, "ShearY", 1.0)  # column x slides x px down
    for x in range(6):
        assert torch.equal(sheared[:, x:, x], img[:, : 6 - x, x])
    square = torch.randint(0, 256, (3, 5, 5), dtype=torch.uint8, generator=g)
    turned = RA.apply(square, "Rotate", 90.0)  # clockwise
    assert (turned.int() - torch.rot90(square, -1, (1, 2)).int()).abs().max() <= 1
    turned = RA.apply(torch.zeros(3, 31, 31, dtype=torch.uint8), "Rotate", 45.0)
    assert torch.equal(turned[:, 0, 0], fill[:, 0]) and turned[:, 15, 15].sum() == 0


def test_sampling_probability_negation_and_magnitude_noise():
    torch.manual_seed(0)
    solarize = FixMatchRandAugment(num_ops=1, ops=["Solarize"], magnitude_std=0)
    changed = sum(not torch.equal(solarize(const(200, 200, 200)), const(200, 200, 200)) for _ in range(400))
    assert 160 < changed < 240  # op_prob 0.5
    bright = FixMatchRandAugment(num_ops=1, ops=["Brightness"], op_prob=1.0, magnitude_std=0)
    seen = {int(bright(const(100, 100, 100))[0, 0, 0]) for _ in range(50)}
    assert seen == {168, 32}  # factor 1 + 0.68 or 1 - 0.68
    posterize = FixMatchRandAugment(num_ops=1, ops=["Posterize"], op_prob=1.0)
    seen = {int(posterize(const(255, 255, 255))[0, 0, 0]) for _ in range(200)}
    assert {252, 254} <= seen <= {248, 252, 254}  # level ~ N(7, 0.5): mostly 6 bits, some 7
    twice = FixMatchRandAugment(num_ops=2, ops=["Posterize"], op_prob=1.0, magnitude_std=0)
    assert torch.equal(twice(const(255, 3, 7)), const(252, 0, 4))


def test_full_policy_in_a_pipeline_is_seeded():
    pipe = build_pipeline(
        [
            {
                "type": "FixMatchRandAugment",
                "num_ops": 2,
                "magnitude": 7,
                "magnitude_std": 0.5,
                "interpolation": "bicubic",
            }
        ]
    )
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(5)
    a = [pipe(img) for _ in range(10)]
    torch.manual_seed(5)
    b = [pipe(img) for _ in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == img.shape and x.dtype == torch.uint8 for x in a)
    assert sum(not torch.equal(x, img) for x in a) >= 3


def test_fixmatch_rand_augment_errors():
    with pytest.raises(ValueError, match="unknown or no ops"):
        FixMatchRandAugment(ops=["Invert"])
    with pytest.raises(ValueError, match="magnitude <= total_level"):
        FixMatchRandAugment(magnitude=12)
    with pytest.raises(ValueError, match="fill must be three values"):
        FixMatchRandAugment(fill=[128])
    with pytest.raises(ValueError, match="interpolation must be one of"):
        FixMatchRandAugment(interpolation="lanczos")
    with pytest.raises(ValueError, match="uint8 RGB image"):
        RA.apply(torch.zeros(1, 4, 4, dtype=torch.uint8), "Rotate", 10.0)


def test_timm_rand_augment_is_deits_imagenet_policy():
    ra = TimmRandAugment("rand-m9-mstd0.5-inc1", img_size=224)
    # timm's _RAND_INCREASING_TRANSFORMS, the 'inc1' list
    assert [op.name for op in ra.transform.ops] == [
        "AutoContrast",
        "Equalize",
        "Invert",
        "Rotate",
        "PosterizeIncreasing",
        "SolarizeIncreasing",
        "SolarizeAdd",
        "ColorIncreasing",
        "ContrastIncreasing",
        "BrightnessIncreasing",
        "SharpnessIncreasing",
        "ShearX",
        "ShearY",
        "TranslateXRel",
        "TranslateYRel",
    ]
    assert ra.transform.num_layers == 2
    assert {(op.prob, op.magnitude, op.magnitude_std) for op in ra.transform.ops} == {(0.5, 9, 0.5)}
    assert {tuple(op.kwargs.items()) for op in ra.transform.ops} == {
        (("fillcolor", (124, 116, 104)), ("resample", Image.BICUBIC))
    }
    assert ra.hparams["translate_const"] == 100
    img = torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8)
    assert ra(img).shape == img.shape and ra(img).dtype == torch.uint8
    with pytest.raises(ValueError, match="timm RandAugment string"):
        TimmRandAugment("original-mstd0.5")


def test_timm_posterize_at_the_top_level_gives_black_instead_of_raising():
    ra = TimmRandAugment("rand-m9-mstd0.5-inc1")
    op = next(op for op in ra.transform.ops if op.name == "PosterizeIncreasing")
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0  # level 10: keep 4 - 4 = 0 bits
    img = to_pil(torch.full((3, 8, 8), 200, dtype=torch.uint8))
    assert from_pil(op(img)).sum() == 0
    op.magnitude = 5  # keep 4 - 2 = 2 bits: 200 = 0b11001000 -> 0b11000000
    assert set(from_pil(op(img)).unique().tolist()) == {192}
