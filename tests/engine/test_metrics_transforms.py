"""Top-k accuracy and the batched augmentations."""

import pytest
import torch

from mixbench.data import BatchRandomErasing, RandomCropPad, RandomFlip
from mixbench.engine import Accuracy


def test_topk_accuracy_on_hand_built_logits():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([0, 1, 1, 0])  # ranks of the true class: 0, 1, 1, 2
    metric = Accuracy(topk=(1, 2, 3))
    metric.process(None, [{"logits": logits, "labels": labels}])
    assert metric.compute_metrics(metric.results) == {"top1": 25.0, "top2": 75.0, "top3": 100.0}


def test_random_crop_pad_is_a_shifted_window():
    torch.manual_seed(3)
    x = torch.arange(4 * 2 * 6 * 6, dtype=torch.float32).view(4, 2, 6, 6)
    out = RandomCropPad(padding=2)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(4):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_random_flip_flips_exactly_the_drawn_samples():
    x = torch.rand(64, 1, 3, 5)
    out = RandomFlip(0.5)(x)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54
    assert torch.equal(RandomFlip(1.0)(x), x.flip(3))
    assert torch.equal(RandomFlip(0.0)(x), x)


def test_random_crop_pad_reflect_and_edge_padding():
    torch.manual_seed(0)
    x = torch.arange(3 * 1 * 5 * 5, dtype=torch.float32).view(3, 1, 5, 5)
    for mode, torch_mode in (("reflect", "reflect"), ("edge", "replicate")):
        out = RandomCropPad(padding=2, padding_mode=mode)(x)
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode=torch_mode)
        for i in range(3):
            assert any(
                torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 5])
                for dy in range(5)
                for dx in range(5)
            )
    # a row 1..5 padded by 2: reflect gives [3, 2, 1, 2, 3, 4, 5, 4, 3], zeros [0, 0, 1, ...]
    row = torch.arange(1.0, 6.0).view(1, 1, 1, 5).expand(64, 1, 5, 5)
    reflect = RandomCropPad(padding=2, padding_mode="reflect")(row)
    assert set(reflect[:, 0, 0, 0].tolist()) == {1.0, 2.0, 3.0}
    assert set(reflect.unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}  # never a fill value
    assert 0.0 in RandomCropPad(padding=2)(row).unique().tolist()
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        RandomCropPad(4, padding_mode="symmetric")


def test_random_erasing_box_statistics():
    torch.manual_seed(0)
    erase = BatchRandomErasing(prob=1.0, mode="pixel")
    x = torch.zeros(400, 3, 32, 32)
    out = erase(x)
    changed = out != 0
    areas, aspects, noise = [], [], []
    for i in range(400):
        m = changed[i].any(0)
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert h and w, "prob=1: every sample is erased"
        assert m.sum() == h * w == m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].sum()  # a rectangle
        areas.append(h * w / 1024)
        aspects.append(h / w)
        noise.append(out[i][:, m])
    areas, aspects = torch.tensor(areas), torch.tensor(aspects)
    # rounding of h and w moves the area a little outside [0.02, 1/3]
    assert areas.min() >= 0.015 and areas.max() <= 0.37
    assert aspects.min() >= 0.2 and aspects.max() <= 5
    assert areas.mean().item() == pytest.approx((0.02 + 1 / 3) / 2, abs=0.03)
    noise = torch.cat([n.flatten() for n in noise])  # 'pixel': N(0, 1) per pixel and channel
    assert noise.mean().abs() < 0.02 and noise.std().item() == pytest.approx(1.0, abs=0.02)


def test_random_erasing_probability_modes_and_errors():
    torch.manual_seed(1)
    x = torch.full((2000, 1, 8, 8), 5.0)
    erased = (BatchRandomErasing(prob=0.25)(x) != 5).flatten(1).any(1).float().mean()
    assert 0.21 < erased < 0.29
    out = BatchRandomErasing(prob=1.0, mode="const")(x[:20])
    assert set(out.unique().tolist()) == {0.0, 5.0}
    out = BatchRandomErasing(prob=1.0, mode="rand")(torch.full((20, 3, 16, 16), 5.0))
    for img in out:  # one value per channel inside the box
        for ch in img:
            assert len(ch[ch != 5].unique()) == 1
    assert torch.equal(BatchRandomErasing(prob=0.0)(x), x)
    with pytest.raises(ValueError, match="normalized_batch_augments"):
        BatchRandomErasing()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="mode must be one of"):
        BatchRandomErasing(mode="zeros")


def test_data_preprocessor_erases_after_normalisation():
    from mixbench.models.data_preprocessor import ClassifierDataPreprocessor

    torch.manual_seed(2)
    pre = ClassifierDataPreprocessor(
        mean=[100.0],
        std=[50.0],
        normalized_batch_augments=[{"type": "BatchRandomErasing", "prob": 1.0, "mode": "const"}],
    )
    data = {
        "inputs": torch.full((4, 1, 16, 16), 200, dtype=torch.uint8),
        "data_samples": torch.zeros(4, dtype=torch.long),
    }
    out = pre(data, training=True)["inputs"]
    assert set(out.unique().tolist()) == {0.0, 2.0}  # erased to the mean, the rest normalised
    assert torch.equal(pre(data, training=False)["inputs"], torch.full((4, 1, 16, 16), 2.0))


def test_batch_augments_and_per_sample_transforms_are_separate_registries():
    """The batch augments are in BATCH_AUGMENTS only, the per-sample transforms in TRANSFORMS
    only; each builder refuses the other's kind, saying where it belongs."""
    import mixbench.data  # noqa: F401  (registers both kinds)
    from mixbench.data.pipeline import build_pipeline
    from mixbench.models.data_preprocessor import ClassifierDataPreprocessor
    from mixbench.registry import BATCH_AUGMENTS, TRANSFORMS, MisplacedTypeError

    assert set(BATCH_AUGMENTS.module_dict) == {"RandomCropPad", "RandomFlip", "BatchRandomErasing"}
    assert not set(BATCH_AUGMENTS.module_dict) & set(TRANSFORMS.module_dict)
    assert {"RandomResizedCrop", "FixMatchRandAugment", "TimmRandAugment"} <= set(TRANSFORMS.module_dict)
    with pytest.raises(MisplacedTypeError, match=r"^RandomFlip is a batch augment: put it under model\."):
        build_pipeline([{"type": "RandomFlip"}])
    with pytest.raises(MisplacedTypeError, match=r"^RandomResizedCrop is a per-sample transform: put it in"):
        ClassifierDataPreprocessor(batch_augments=[{"type": "RandomResizedCrop", "size": 8}])
    with pytest.raises(MisplacedTypeError, match=r"^FixMatchRandAugment is a per-sample transform"):
        ClassifierDataPreprocessor(normalized_batch_augments=[{"type": "FixMatchRandAugment"}])


def test_random_erasing_before_normalisation_is_refused_when_the_preprocessor_is_built():
    from mixbench.models.data_preprocessor import ClassifierDataPreprocessor

    with pytest.raises(ValueError, match=r"batch_augments\[1\]: BatchRandomErasing runs on normalised"):
        ClassifierDataPreprocessor(batch_augments=[{"type": "RandomFlip"}, {"type": "BatchRandomErasing"}])
    pre = ClassifierDataPreprocessor(normalized_batch_augments=[{"type": "BatchRandomErasing", "prob": 1.0}])
    x = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    torch.manual_seed(0)  # the boxes come from the global generator
    out = pre({"inputs": x, "data_samples": torch.tensor([0, 1])}, training=True)["inputs"]
    assert out.dtype == torch.float32 and bool((out != 1.0).any())  # erased with N(0, 1) noise
