"""SaliencyMix: the common contract; the saliency map equals OpenCV's fine-grained one value
for value and finds an odd blob; the box is centred on the paired image's peak."""

import functools

import cv2
import numpy as np
import pytest
import torch
from mbtest.mixers import (
    check_beta_distribution,
    check_output,
    check_standard,
    collect_lams,
    make_batch,
    seeded,
)

from mixbench.mixers import SaliencyMix
from mixbench.mixers.boxes import centred_box, cut_size
from mixbench.mixers.saliencymix import fine_grained_saliency, saliency_peaks


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(SaliencyMix, alpha=1.0), mask_method=True)
    # lambda is drawn as CutMix's (shared BoxMixer code): one large per-sample batch suffices
    x, y = make_batch(b=400, c=1, h=8, w=8)
    mixer = SaliencyMix(alpha=0.2, lam_mode="elem", correct_lam=False)
    check_beta_distribution(collect_lams(mixer, 1, x, y), 0.2)


def square_images(centres, size=32):
    """Flat black images with one 3x3 white square at each centre."""
    x = torch.zeros(len(centres), 3, size, size)
    for i, (r, c) in enumerate(centres):
        x[i, :, r - 1 : r + 2, c - 1 : c + 2] = 1.0
    return x


def test_a_white_square_is_the_most_salient():
    centres = [(5, 5), (20, 9), (26, 27), (10, 24)]
    sal = fine_grained_saliency(square_images(centres))
    for i, (r, c) in enumerate(centres):
        assert sal[i, r, c] == sal[i].max() == 1.0
        assert float(sal[i, r, c - 3]) < 0.5  # beside the square


def opencv_fine_grained(img: np.ndarray) -> np.ndarray:
    """OpenCV's map of an (H, W, C) RGB uint8 image (it reads colour as BGR)."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    ok, sal = detector.computeSaliency(
        np.ascontiguousarray(img[..., ::-1]) if img.shape[2] == 3 else img[..., 0]
    )
    assert ok
    return sal


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (17, 23), (5, 7), (2, 9), (224, 224)])
def test_saliency_equals_opencv(channels, size):
    rng = np.random.default_rng(size[0] * 100 + channels)
    h, w = size
    noise = rng.integers(0, 256, (h, w, channels))
    rows, cols = np.mgrid[:h, :w]
    smooth = (100 + 80 * np.sin(cols / 5.0) * np.cos(rows / 7.0))[..., None].repeat(channels, 2)
    for img in (noise, smooth):
        img = img.astype(np.uint8)
        img[0, 0], img[-1, -1] = 0, 255  # spans 0..255: the 8-bit image is the original
        ours = fine_grained_saliency(torch.from_numpy(img).permute(2, 0, 1)[None].float())[0]
        ref = opencv_fine_grained(img)
        assert np.array_equal(ours.numpy(), ref), f"{int((ours.numpy() != ref).sum())} pixels differ"
        assert np.argmax(ref) == int(ours.flatten().argmax())


def test_saliency_of_a_normalised_batch_is_that_of_the_original():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 3, 20, 20)).astype(np.uint8)
    img[:, :, 0, 0], img[:, :, -1, -1] = 0, 255
    x = torch.from_numpy(img).float()
    normalised = (x / 255 - 0.45) / 0.226
    sal = fine_grained_saliency(normalised)
    assert sal.shape == (2, 20, 20) and sal.dtype == torch.float32
    assert torch.equal(sal, fine_grained_saliency(x))
    assert torch.equal(sal[1:], fine_grained_saliency(normalised[1:]))  # per image
    assert torch.equal(fine_grained_saliency(torch.zeros(1, 3, 8, 8)), torch.zeros(1, 8, 8))


def test_box_is_centred_on_the_paired_images_peak():
    g = seeded(3)
    x = torch.rand(6, 3, 32, 32, generator=g)
    y = torch.arange(6)
    cy, cx = saliency_peaks(x)
    for lam_mode in ("batch", "elem", "pair"):
        out = check_output(SaliencyMix(alpha=1.0, lam_mode=lam_mode, generator=seeded(5)), x, y)
        holes = 0
        for i in range(6):
            hole = out.mask[i, 0] == 0
            if not hole.any():
                continue
            holes += 1
            src = int(out.index[i])
            if lam_mode == "pair":  # partners share the box of the lower-indexed one's source
                src = int(out.index[min(i, src)])
            r, c = int(cy[src]), int(cx[src])
            assert hole[r, c], "the paired image's saliency peak must be inside the box"
            rows, cols = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
            assert abs(int(rows.min() + rows.max()) / 2 - r) <= 1 or rows.min() == 0 or rows.max() == 31
            assert abs(int(cols.min() + cols.max()) / 2 - c) <= 1 or cols.min() == 0 or cols.max() == 31
        assert holes >= 3


def test_batch_box_is_the_first_partners_peak_for_everyone():
    """``batch_box=True``: one box for the whole batch, centred on the saliency peak of
    ``x[index[0]]`` (OpenMixup augments/saliencymix.py:91-92, the official code), spanning
    ``c - cut // 2 .. c + cut // 2`` with ``box_span='symmetric'`` (saliencymix.py:66-69)."""
    x = torch.rand(6, 3, 32, 32, generator=seeded(3))
    y = torch.arange(6)
    cy, cx = saliency_peaks(x)
    for seed in range(6):
        out = check_output(
            SaliencyMix(
                alpha=1.0, batch_box=True, box_span="symmetric", correct_lam=False, generator=seeded(seed)
            ),
            x,
            y,
        )
        assert torch.equal(out.mask, out.mask[:1].expand_as(out.mask))
        src = int(out.index[0])
        cut = cut_size(out.lam[:1], 32)
        box = centred_box(cy[src : src + 1], cx[src : src + 1], cut, cut, 32, 32, span="symmetric")
        expected = torch.ones(32, 32)
        expected[int(box[0]) : int(box[1]), int(box[2]) : int(box[3])] = 0
        assert torch.equal(out.mask[0, 0], expected)
    with pytest.raises(ValueError, match="lam_mode='batch'"):
        SaliencyMix(batch_box=True, lam_mode="elem")
