"""AugMixClassifier (AugMix, Hendrycks et al., ICLR 2020): the batched ops against Pillow pixel
for pixel, the laws of the chains and of the mixing weight, the Jensen-Shannon term worked by
hand, one forward of clean + two views, errors, the method file, reproducibility, CPU/CUDA,
digits training and exact resume."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import forward_batches_and_train
from mbtest.mixers import seeded
from mbtest.repo import method_of, model_of
from mbtest.training import train_and_resume
from PIL import Image, ImageEnhance, ImageOps
from scipy import stats

from mixbench.models import AugMixClassifier
from mixbench.models.classifiers.augmix import ALL_OPS, OP_FUNCTIONS, SIGNED, augmix_views, jensen_shannon
from mixbench.registry import MODELS

RESNET = {"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}


def classifier(**kw):
    torch.manual_seed(0)
    return AugMixClassifier(backbone=RESNET, head={"type": "LinearHead", "num_classes": 3}, **kw)


def pillow(name, img, level, negate):
    """The official op ``name`` at ``level`` (its int/float parameter worked out here), by Pillow."""
    w, h = img.size
    sign = -1 if negate else 1
    affine = lambda coeffs: img.transform((w, h), Image.AFFINE, coeffs, resample=Image.BILINEAR)  # noqa: E731
    factor = level * 1.8 / 10 + 0.1
    return {
        "autocontrast": lambda: ImageOps.autocontrast(img),
        "equalize": lambda: ImageOps.equalize(img),
        "posterize": lambda: ImageOps.posterize(img, 4 - int(level * 4 / 10)),
        "rotate": lambda: img.rotate(sign * int(level * 30 / 10), resample=Image.BILINEAR),
        "solarize": lambda: ImageOps.solarize(img, 256 - int(level * 256 / 10)),
        "shear_x": lambda: affine((1, sign * level * 0.3 / 10, 0, 0, 1, 0)),
        "shear_y": lambda: affine((1, 0, 0, sign * level * 0.3 / 10, 1, 0)),
        "translate_x": lambda: affine((1, 0, sign * int(level * (w / 3) / 10), 0, 1, 0)),
        "translate_y": lambda: affine((1, 0, 0, 0, 1, sign * int(level * (h / 3) / 10))),
        "color": lambda: ImageEnhance.Color(img).enhance(factor),
        "contrast": lambda: ImageEnhance.Contrast(img).enhance(factor),
        "brightness": lambda: ImageEnhance.Brightness(img).enhance(factor),
        "sharpness": lambda: ImageEnhance.Sharpness(img).enhance(factor),
    }[name]()


@pytest.mark.parametrize("channels", [3, 1])
def test_every_op_equals_pillow_pixel_for_pixel(channels):
    rng = np.random.RandomState(channels)
    for name in ALL_OPS:
        for trial in range(6):
            shape = (16, 20, channels) if trial % 2 else (20, 20, channels)
            arr = rng.randint(0, 256, shape) if trial % 3 else rng.rand(*shape) * 120 + 40
            arr = arr.astype(np.uint8)
            level, negate = rng.uniform(0.1, 10), bool(rng.rand() > 0.5)
            ref = np.asarray(
                pillow(name, Image.fromarray(arr[..., 0] if channels == 1 else arr), level, negate)
            )
            x = torch.from_numpy(arr).permute(2, 0, 1)[None].float()
            signed = -level if negate and name in SIGNED else level
            got = OP_FUNCTIONS[name](x, torch.tensor([signed], dtype=torch.float64))[0]
            got = got.permute(1, 2, 0).numpy().astype(np.uint8)
            np.testing.assert_array_equal(got.reshape(ref.shape), ref, err_msg=f"{name} {trial} {level}")


def test_ops_treat_each_image_with_its_own_level():
    rng = np.random.RandomState(0)
    arrs = rng.randint(0, 256, (3, 12, 12, 3)).astype(np.uint8)
    x = torch.from_numpy(arrs).permute(0, 3, 1, 2).float()
    for name in ("rotate", "posterize", "translate_y", "equalize"):
        levels = [1.0, -4.5, 8.2] if name in SIGNED else [1.0, 4.5, 8.2]
        got = OP_FUNCTIONS[name](x, torch.tensor(levels, dtype=torch.float64))
        for i, level in enumerate(levels):
            ref = pillow(name, Image.fromarray(arrs[i]), abs(level), level < 0)
            np.testing.assert_array_equal(got[i].permute(1, 2, 0).numpy().astype(np.uint8), np.asarray(ref))


def test_identity_chains_give_the_image_back():
    # autocontrast leaves a channel that spans 0..255 unchanged, so every chain is the image
    # and the convex mix (1 - m) x + m sum_i w_i x must be x whatever m and w are drawn
    x = torch.randint(0, 256, (8, 3, 6, 6)).float()
    x[:, :, 0, 0], x[:, :, 0, 1] = 0, 255
    views = augmix_views(x, 2, ops=("autocontrast",), generator=seeded(0))
    assert views.shape == (2, 8, 3, 6, 6)
    torch.testing.assert_close(views, x[None].expand_as(views), atol=1e-4, rtol=0)
    # and through the classifier: normalised in, the same normalised batch out
    clf = classifier(data_preprocessor={"type": "ClassifierDataPreprocessor", "mean": [100.0], "std": [50.0]})
    clf.ops = ("autocontrast",)
    inputs = (x[:, :1] - 100) / 50
    torch.testing.assert_close(
        clf.views(inputs, 2), inputs[None].expand(2, -1, -1, -1, -1), atol=1e-5, rtol=0
    )


def test_depth_op_choice_and_mixing_weight_follow_their_laws(monkeypatch):
    # ops replaced by recorders: how many chains each op gets at each chain step
    calls = {}

    def recorder(name):
        def op(img, level):
            calls.setdefault(name, []).append(img.shape[0])
            return img

        return op

    for name in ("autocontrast", "equalize"):
        monkeypatch.setitem(OP_FUNCTIONS, name, recorder(name))
    augmix_views(
        torch.zeros(1000, 1, 2, 2), 2, width=3, ops=("autocontrast", "equalize"), generator=seeded(1)
    )
    chains = 2 * 1000 * 3
    per_step = [a + e for a, e in zip(calls["autocontrast"], calls["equalize"])]
    assert per_step[0] == chains  # depth uniform in 1..3: 1, 2/3, 1/3 go on
    assert abs(per_step[1] / chains - 2 / 3) < 0.02 and abs(per_step[2] / chains - 1 / 3) < 0.02
    assert abs(sum(calls["autocontrast"]) / sum(per_step) - 1 / 2) < 0.02  # ops drawn uniformly
    calls.clear()
    augmix_views(
        torch.zeros(10, 1, 2, 2), 1, width=2, depth=2, ops=("autocontrast", "equalize"), generator=seeded(1)
    )
    assert sum(calls["autocontrast"]) + sum(calls["equalize"]) == 10 * 2 * 2
    # a white pixel solarized is black (every threshold is <= 254) and stays black, so with
    # one chain view = (1 - m) 255: m ~ Beta(alpha, alpha)
    white = torch.full((3000, 1, 1, 1), 255.0)
    for alpha in (1.0, 0.5):
        views = augmix_views(white, 1, width=1, alpha=alpha, ops=("solarize",), generator=seeded(2))
        m = 1 - views.flatten().double() / 255
        assert stats.kstest(m.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 0.01


def test_levels_lie_in_their_range():
    # posterize keeps 4 bits below level 2.5 and 3 from there: 255 -> 240 or 224, the share
    # of 3 bits is (3 - 2.5) / (3 - 0.1) at severity 3 (levels ~ U(0.1, 3))
    white = torch.full((3000, 1, 1, 1), 255.0)
    v = augmix_views(white, 1, width=1, depth=1, ops=("posterize",), generator=seeded(4)).flatten()
    assert ((v >= 224) & (v <= 255)).all()
    # v = (1 - m) 255 + m 224 < 240 needs m > 15/31, m ~ U(0, 1)
    expected = (3 - 2.5) / (3 - 0.1) * (1 - 15 / 31)
    assert abs((v < 240).float().mean().item() - expected) < 0.02


def test_views_are_reproducible_from_a_seed():
    x = torch.randint(0, 256, (5, 3, 8, 8)).float()
    a = augmix_views(x, 2, ops=ALL_OPS, generator=seeded(7))
    b = augmix_views(x, 2, ops=ALL_OPS, generator=seeded(7))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert not torch.equal(a, augmix_views(x, 2, ops=ALL_OPS, generator=seeded(8)))


def test_jensen_shannon_worked_by_hand():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.5, 0.5]])  # clean, view 1, view 2 (B = 1)
    p = [
        [math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))]
        for a, b in logits.tolist()
    ]
    mix = [(p[0][k] + p[1][k] + p[2][k]) / 3 for k in range(2)]
    kl = [sum(q[k] * math.log(q[k] / mix[k]) for k in range(2)) for q in p]
    assert jensen_shannon(logits, 2).item() == pytest.approx(sum(kl) / 3, rel=1e-5)
    assert jensen_shannon(torch.zeros(6, 4), 2).item() == pytest.approx(0.0, abs=1e-7)


def test_step_is_one_forward_of_clean_and_two_views_with_the_official_loss():
    x = torch.randn(4, 1, 8, 8, generator=seeded(5)).clamp(-1, 1)
    y = torch.tensor([0, 1, 2, 0])
    clf = classifier()
    clf.generator = seeded(6)
    batches, losses = forward_batches_and_train(clf, x, y)
    assert batches == [12] and set(losses) == {"loss", "jsd_loss"}
    with torch.no_grad():
        clf.generator = seeded(6)
        views = clf.views(x, 2)
        logits_all = clf.logits(torch.cat([x, views[0], views[1]]))
        clf.generator = seeded(6)
        again = clf.loss(x, y)
    clean, aug1, aug2 = torch.split(logits_all, 4)
    p_clean, p_aug1, p_aug2 = clean.softmax(1), aug1.softmax(1), aug2.softmax(1)
    p_mixture = torch.clamp((p_clean + p_aug1 + p_aug2) / 3.0, 1e-7, 1).log()
    official = (
        12
        * (
            F.kl_div(p_mixture, p_clean, reduction="batchmean")
            + F.kl_div(p_mixture, p_aug1, reduction="batchmean")
            + F.kl_div(p_mixture, p_aug2, reduction="batchmean")
        )
        / 3.0
    )
    torch.testing.assert_close(again["loss"], F.cross_entropy(clean, y))
    torch.testing.assert_close(again["jsd_loss"], official)
    # the views are 8-bit images mixed in float, normalised back with the preprocessor's stats
    images = views * 127.5 + 127.5
    assert images.min() >= -1e-4 and images.max() <= 255 + 1e-4 and not torch.equal(views[0], views[1])


def test_no_jsd_trains_on_one_augmix_view():
    clf = classifier(jsd=False)
    batches, losses = forward_batches_and_train(clf, torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    assert batches == [4] and set(losses) == {"loss"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    x = torch.randint(0, 256, (6, 3, 12, 12)).float()
    cpu = augmix_views(x, 2, ops=ALL_OPS, generator=seeded(3))
    cuda = augmix_views(x.cuda(), 2, ops=ALL_OPS, generator=seeded(3))
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-3, rtol=0)
    losses = []
    for device in ("cpu", "cuda"):
        clf = classifier().eval().to(device)
        clf.generator = seeded(4)
        xs = torch.randn(6, 1, 16, 16, generator=seeded(0)).clamp(-1, 1)
        losses.append(
            {k: v.item() for k, v in clf.loss(xs.to(device), (torch.arange(6) % 3).to(device)).items()}
        )
    for k in losses[0]:
        assert losses[1][k] == pytest.approx(losses[0][k], rel=1e-4, abs=1e-5), k


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="method.mixer must be Vanilla"):
        classifier(mixer={"type": "Mixup", "alpha": 1.0})
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        classifier(width=0)
    with pytest.raises(ValueError, match="depth must be an integer >= 1 or null"):
        classifier(depth=0)
    with pytest.raises(ValueError, match="severity must be a finite number > 0.1"):
        classifier(severity=0.1)
    with pytest.raises(ValueError, match="jsd must be true or false"):
        classifier(jsd="yes")
    with pytest.raises(ValueError, match="images have 3 channels but"):
        classifier().loss(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))


def test_method_file_builds_the_published_setting():
    method = method_of("augmix")
    assert method["name"] == "AugMix" and set(method) == {"name", "classifier"}
    clf = MODELS.build(model_of("augmix", head={"num_classes": 10}))
    assert isinstance(clf, AugMixClassifier) and type(clf.mixer).__name__ == "Vanilla"
    assert (clf.severity, clf.width, clf.depth, clf.alpha, clf.jsd, clf.jsd_weight) == (
        3,
        3,
        None,
        1.0,
        True,
        12.0,
    )
    assert clf.ops == ALL_OPS[:9]


def test_trains_two_epochs_on_digits_and_resumes(tmp_path):
    result, _ = train_and_resume(tmp_path, "augmix")
    assert result["run"]["method"] == "AugMix"
