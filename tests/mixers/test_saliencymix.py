"""SaliencyMix: the common contract; spectral-residual saliency finds an odd blob; the box is
centred on the paired image's peak."""
import functools

import torch

from mixbench.mixers import SaliencyMix
from mixbench.mixers.saliencymix import saliency_peaks, spectral_residual_saliency
from tests.mixers.helpers import (check_beta_distribution, check_output, check_standard,
                                  collect_lams, make_batch, seeded)


def test_contract_and_lambda_distribution():
    check_standard(functools.partial(SaliencyMix, alpha=1.0), mask_method=True)
    # lambda is drawn as CutMix's (shared BoxMixer code): one large per-sample batch suffices
    x, y = make_batch(b=400, c=1, h=8, w=8)
    mixer = SaliencyMix(alpha=0.2, lam_mode="elem", correct_lam=False)
    check_beta_distribution(collect_lams(mixer, 1, x, y), 0.2)


def blob_images(centres, size=32):
    """Smooth textured backgrounds with one small bright square at each centre."""
    g = seeded(0)
    x = 0.1 * torch.randn(len(centres), 3, size, size, generator=g)
    for i, (r, c) in enumerate(centres):
        x[i, :, r - 1:r + 2, c - 1:c + 2] += 3.0
    return x


def test_saliency_peaks_at_the_blob():
    centres = [(5, 5), (20, 9), (26, 27), (10, 24)]
    cy, cx = saliency_peaks(blob_images(centres))
    for (r, c), py, px in zip(centres, cy.tolist(), cx.tolist()):
        assert abs(py - r) <= 1 and abs(px - c) <= 1


def test_saliency_is_batched_and_shaped():
    x = blob_images([(8, 8), (20, 20)])
    sal = spectral_residual_saliency(x, size=64)
    assert sal.shape == (2, 64, 64) and bool((sal >= 0).all())
    torch.testing.assert_close(sal[1:], spectral_residual_saliency(x[1:], size=64))


def test_box_is_centred_on_the_paired_images_peak():
    centres = [(6, 6), (24, 10), (12, 25), (26, 26)]
    x = blob_images(centres)
    y = torch.arange(4)
    out = check_output(SaliencyMix(alpha=1.0, correct_lam=True, generator=seeded(5)), x, y)
    for i in range(4):
        hole = out.mask[i, 0] == 0
        if not hole.any():
            continue
        r, c = centres[int(out.index[i])]
        assert hole[r, c], "the paired image's salient blob must be inside the pasted box"
