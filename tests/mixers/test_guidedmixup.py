"""GuidedMixup (Kang & Kim, AAAI 2023) against its definition: blur, spectral residual,
greedy pairing and the per-pixel ratio, each checked against an independent computation."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from mbtest.mixers import (
    TinyClassifier,
    check_batch_size_one,
    check_cpu_cuda_equal,
    check_dtypes_and_formats,
    check_mask_identity,
    check_model_untouched,
    check_output,
    check_reproducible,
    make_batch,
    requires_cuda,
    seeded,
)
from mbtest.repo import method_of
from mbtest.training import train_and_resume
from scipy import ndimage

from mixbench.mixers import GuidedMixup
from mixbench.mixers.guidedmixup import gaussian_blur, greedy_cycle, spectral_residual


def model():
    torch.manual_seed(0)
    return TinyClassifier()


# -- pieces -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 9, 13), (1, 3, 5)])
def test_gaussian_blur_equals_torchvision(shape):
    maps = torch.rand(*shape, generator=seeded(1))
    expected = TF.gaussian_blur(maps[:, None], [7, 7], [3.0, 3.0])[:, 0] if min(shape[1:]) > 3 else None
    got = gaussian_blur(maps, 7, 3.0)
    assert got.shape == maps.shape
    if expected is not None:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    else:  # too small to mirror 3 pixels (torchvision refuses): replicated border
        padded = np.pad(maps.numpy(), ((0, 0), (3, 3), (3, 3)), mode="edge")
        k = np.exp(-0.5 * (np.arange(-3, 4) / 3.0) ** 2)
        k /= k.sum()
        ref = ndimage.correlate1d(ndimage.correlate1d(padded, k, axis=1), k, axis=2)[:, 3:-3, 3:-3]
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(got.sum(), maps.sum(), rtol=0.2)  # a blur, not a rescale


def spectral_residual_reference(x: torch.Tensor) -> np.ndarray:
    """The official Guided-SR map, written from its description with NumPy/SciPy FFTs."""
    grey = TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x.mean(1, keepdim=True)
    h, w = x.shape[-2:]
    if h > 128:
        grey = TF.resize(grey, [128, 128], antialias=True)
    g = grey[:, 0].double().numpy()
    f = np.fft.fft2(g)
    mag = np.sqrt(np.abs(f) ** 2 + 1e-10)
    log_mag = np.log(mag)
    box = ndimage.uniform_filter(log_mag, size=(1, 3, 3), mode="nearest")
    sal = np.abs(np.fft.ifft2(f * np.exp(log_mag - box) / mag))
    sal = TF.gaussian_blur(torch.from_numpy(sal).float()[:, None], [7, 7], [3.0, 3.0])
    if h > 128:
        sal = TF.resize(sal, [h, w], antialias=True)
    return sal[:, 0].numpy()


@pytest.mark.parametrize("shape", [(2, 3, 20, 24), (2, 1, 16, 16), (1, 3, 136, 140)])
def test_spectral_residual_equals_reference(shape):
    x = torch.randn(*shape, generator=seeded(2))
    np.testing.assert_allclose(
        spectral_residual(x).numpy(), spectral_residual_reference(x), rtol=1e-4, atol=1e-5
    )


def test_greedy_cycle_hand_computed():
    # four samples at positions 0, 1, 3, 7 on a line, distance |p_i - p_j|:
    # most distant pair (0, 3) -> index[0] = 3; from 3 the farthest of {1, 2} is 1 (6 vs 4);
    # from 1 only 2 is left (0 and 3 were left already); 2 closes the cycle back to 0
    p = torch.tensor([0.0, 1.0, 3.0, 7.0])
    assert greedy_cycle((p[:, None] - p[None]).abs()).tolist() == [3, 2, 0, 1]
    # two samples swap; ties go to the lowest index (row-major first maximum)
    assert greedy_cycle(torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist() == [1, 0]
    assert greedy_cycle(torch.ones(3, 3) - torch.eye(3)).tolist() == [1, 2, 0]


@pytest.mark.parametrize("b", [2, 3, 7, 32])
def test_greedy_cycle_is_one_cycle_through_the_batch(b):
    pts = torch.randn(b, 5, generator=seeded(b))
    index = greedy_cycle(torch.cdist(pts, pts))
    seen, i = [], 0
    for _ in range(b):
        seen.append(i)
        i = int(index[i])
    assert i == 0 and sorted(seen) == list(range(b)), index.tolist()


def test_mask_is_the_saliency_ratio_on_a_hand_computed_batch():
    # blur off (blur_size 1): s_0 = [[1, 0], [0, 3]] / 4, s_1 = uniform 1/4; B = 2 -> swap
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[10.0, 20.0], [30.0, 40.0]]]])
    y = torch.tensor([0, 1])
    sal = torch.tensor([[[1.0, 0.0], [0.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    out = GuidedMixup(blur_size=1, prob=1.0).mix_with_saliency(x, y, sal)
    assert out.index.tolist() == [1, 0]
    m0 = torch.tensor([[0.5, 0.0], [0.0, 0.75]])  # (1/4) / (1/4 + 1/4), 0, 0, (3/4) / 1
    m1 = torch.tensor([[0.5, 1.0], [1.0, 0.25]])
    torch.testing.assert_close(out.mask[:, 0], torch.stack([m0, m1]))
    torch.testing.assert_close(out.lam, torch.tensor([1.25 / 4, 2.75 / 4]))
    expected0 = torch.tensor([[0.5 * 1 + 0.5 * 10, 20.0], [30.0, 0.75 * 4 + 0.25 * 40]])
    torch.testing.assert_close(out.inputs[0, 0], expected0)
    assert out.y_b.tolist() == [1, 0]
    # a map that is zero everywhere is uniform; 0 / 0 pixels take 1/2
    sal = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    out = GuidedMixup(blur_size=1, prob=1.0).mix_with_saliency(x, y, sal)
    torch.testing.assert_close(out.mask[0, 0], torch.tensor([[0.25 / 1.25, 1.0], [1.0, 1.0]]))
    torch.testing.assert_close(out.mask[1, 0], torch.tensor([[1 / 1.25, 0.0], [0.0, 0.0]]))


def test_greedy_pairs_images_whose_salient_regions_differ():
    # saliency blobs: samples 0, 2, 4 top-left, 1, 3, 5 bottom-right -> every pair crosses
    sal = torch.zeros(6, 16, 16)
    sal[0::2, 1:5, 1:5] = 1.0
    sal[1::2, 11:15, 11:15] = 1.0
    sal += 0.01 * torch.rand(6, 16, 16, generator=seeded(3))
    x, y = make_batch()
    out = GuidedMixup(prob=1.0).mix_with_saliency(x, y, sal)
    assert ((out.index - torch.arange(6)) % 2 == 1).all(), out.index.tolist()
    # each image keeps its own salient blob: mask > 1/2 there, < 1/2 on the partner's
    for i in range(6):
        own = (1, 5) if i % 2 == 0 else (11, 15)
        other = (11, 15) if i % 2 == 0 else (1, 5)
        assert out.mask[i, 0, own[0] : own[1], own[0] : own[1]].min() > 0.5
        assert out.mask[i, 0, other[0] : other[1], other[0] : other[1]].max() < 0.5


# -- contract ---------------------------------------------------------------------------
@pytest.mark.parametrize("pairing", ["greedy", "random", "reverse", "roll"])
@pytest.mark.parametrize("saliency", ["gradient", "spectral"])
def test_output_contract(saliency, pairing):
    x, y = make_batch()
    clf = model() if saliency == "gradient" else None
    out = check_output(
        GuidedMixup(saliency=saliency, pairing=pairing, prob=1.0, generator=seeded(0)),
        x,
        y,
        model=clf,
        mask_method=True,
    )
    check_mask_identity(out, x)  # inputs == M x + (1 - M) x[index], lam == mean(M)
    assert not torch.equal(out.inputs, x)
    assert ((out.mask > 0) & (out.mask < 1)).float().mean() > 0.5  # a soft, per-pixel ratio


def test_batch_size_one_dtypes_formats_and_prob_zero():
    check_batch_size_one(GuidedMixup(prob=1.0), model=model())
    check_dtypes_and_formats(GuidedMixup(prob=1.0), model=model())
    check_dtypes_and_formats(GuidedMixup(saliency="spectral", prob=1.0))
    x, y = make_batch()
    out = GuidedMixup(prob=0.0)(x, y, model=model())
    assert torch.equal(out.inputs, x) and out.mask is None and out.lam.tolist() == [1.0] * 6


def test_reproducible_and_greedy_is_deterministic():
    x, y = make_batch()
    check_reproducible(GuidedMixup(pairing="random", prob=1.0), x, y, model=model())
    a = GuidedMixup(prob=1.0, generator=seeded(0))(x, y, model=model())
    b = GuidedMixup(prob=1.0, generator=seeded(1))(x, y, model=model())
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.index, b.index)


def test_prob_is_the_fraction_of_mixed_batches():
    x, y = make_batch(b=4, h=8, w=8)
    mixer = GuidedMixup(saliency="spectral", prob=0.5, generator=seeded(4))
    mixed = sum(mixer(x, y).mask is not None for _ in range(400))
    assert 160 <= mixed <= 240  # Binomial(400, 0.5): mean 200, sd 10


def test_gradient_saliency_leaves_the_model_untouched():
    check_model_untouched(GuidedMixup(prob=1.0), model())


def test_errors_name_the_problem():
    x, y = make_batch()
    with pytest.raises(ValueError, match="needs the model"):
        GuidedMixup(prob=1.0)(x, y)
    with pytest.raises(ValueError, match="saliency must be one of"):
        GuidedMixup(saliency="cam")
    with pytest.raises(ValueError, match="pairing must be one of"):
        GuidedMixup(pairing="best")
    with pytest.raises(ValueError, match="odd"):
        GuidedMixup(blur_size=6)
    with pytest.raises(ValueError, match="blur_sigma"):
        GuidedMixup(blur_sigma=0)
    with pytest.raises(ValueError, match=r"saliency must be \(B, H, W\)"):
        GuidedMixup().mix_with_saliency(x, y, torch.ones(6, 8, 8))


@requires_cuda
def test_cpu_cuda_equal():
    x, y = make_batch()
    check_cpu_cuda_equal(GuidedMixup(saliency="spectral", prob=1.0), x, y, exact=False)
    check_cpu_cuda_equal(GuidedMixup(prob=1.0), x, y, model_factory=model, exact=False)
    check_cpu_cuda_equal(GuidedMixup(pairing="random", prob=1.0), x, y, model_factory=model, exact=False)


# -- config and training ----------------------------------------------------------------
def test_method_file_builds_the_published_setting():
    from mixbench.registry import build_mixer

    method = method_of("guidedmixup")
    assert method["name"] == "GuidedMixup" and set(method) == {"name", "mixer"}
    mixer = build_mixer(method["mixer"])
    assert (mixer.saliency, mixer.pairing, mixer.prob, mixer.blur_size, mixer.blur_sigma) == (
        "gradient",
        "greedy",
        0.8,
        7,
        3.0,
    )


def test_trains_two_epochs_on_digits_and_resumes(tmp_path):
    result, _ = train_and_resume(tmp_path, "guidedmixup")
    assert result["run"]["method"] == "GuidedMixup"
