"""Top-k accuracy and the batched augmentations."""
import torch

from mixbench.data import RandomCropPad, RandomFlip
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
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
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
