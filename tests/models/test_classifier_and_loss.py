"""MixupClassifier's training step and the mixed cross-entropy."""

import pytest
import torch
import torch.nn.functional as F

from mixbench.mixers import MixOutput, Mixup
from mixbench.models import MixedCrossEntropy, MixupClassifier


def tiny(mixer=None):
    return MixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1},
        head={"type": "LinearHead", "num_classes": 5},
        mixer=mixer,
    )


def mix_output(b=6, k=5, lam=None, soft=None):
    g = torch.Generator().manual_seed(0)
    y_a = torch.randint(0, k, (b,), generator=g)
    index = torch.randperm(b, generator=g)
    lam = torch.rand(b, generator=g) if lam is None else lam
    return MixOutput(
        inputs=torch.zeros(b, 1, 4, 4), y_a=y_a, y_b=y_a[index], lam=lam, index=index, soft_targets=soft
    )


def test_mixed_ce_equals_ce_against_mixed_one_hot():
    out = mix_output()
    logits = torch.randn(6, 5)
    expected = -(out.target(5) * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(MixedCrossEntropy()(logits, out), expected, atol=1e-6)


def test_label_smoothing_applies_to_both_components():
    out = mix_output()
    logits = torch.randn(6, 5)
    eps = 0.1
    t = out.target(5) * (1 - eps) + eps / 5
    expected = -(t * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(MixedCrossEntropy(label_smoothing=eps)(logits, out), expected, atol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        MixedCrossEntropy(label_smoothing=1.0)


def test_soft_targets_take_precedence():
    soft = torch.softmax(torch.randn(6, 5), 1)
    out = mix_output(soft=soft)
    logits = torch.randn(6, 5)
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(MixedCrossEntropy()(logits, out), expected, atol=1e-6)


def test_unmixed_batch_is_plain_cross_entropy():
    out = mix_output(lam=torch.ones(6))
    logits = torch.randn(6, 5)
    assert torch.allclose(MixedCrossEntropy()(logits, out), F.cross_entropy(logits, out.y_a))


def test_loss_step_mixes_and_backpropagates():
    clf = tiny({"type": "Mixup", "alpha": 1.0})
    assert isinstance(clf.mixer, Mixup)
    x = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    y = torch.arange(8) % 5
    data = clf.data_preprocessor({"inputs": x, "data_samples": y}, True)
    loss = clf(**data, mode="loss")["loss"]
    loss.backward()
    assert torch.isfinite(loss) and clf.head.fc.weight.grad is not None
    pred = clf(**data, mode="predict")
    assert pred[0]["logits"].shape == (8, 5) and torch.equal(pred[0]["labels"], y)
    with pytest.raises(ValueError, match="mode must be"):
        clf(**data, mode="bogus")


def test_preprocessor_normalizes_and_rejects_channel_mismatch():
    clf = tiny()
    x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    out = clf.data_preprocessor({"inputs": x, "data_samples": torch.tensor([0, 1])}, False)
    assert torch.allclose(out["inputs"], torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match="3 channels .* mean/std have 1"):
        clf.data_preprocessor({"inputs": x.expand(2, 3, 4, 4), "data_samples": torch.tensor([0, 1])})


def test_extra_losses_of_the_mix_are_added_to_the_losses():
    """MixOutput.extra_losses (Co-Mixup's clean_loss) is part of the training loss; a name
    that mmengine would not sum into it is refused."""

    class CleanMixer:
        def __init__(self, name):
            self.name = name

        def __call__(self, x, y, model=None):
            b = x.shape[0]
            return MixOutput(
                inputs=x,
                y_a=y,
                y_b=y,
                lam=torch.ones(b),
                index=torch.arange(b),
                extra_losses={self.name: torch.tensor(0.25, requires_grad=True)},
            )

    clf = tiny()
    clf.mixer = CleanMixer("clean_loss")
    x = torch.zeros(4, 1, 8, 8)
    losses = clf.loss(x, torch.tensor([0, 1, 2, 3]))
    assert set(losses) == {"loss", "clean_loss"} and float(losses["clean_loss"]) == 0.25
    total, _ = clf.parse_losses(losses)
    assert torch.isclose(total, losses["loss"] + 0.25)
    for bad in ("clean", "loss"):
        clf.mixer = CleanMixer(bad)
        with pytest.raises(ValueError, match=f"extra loss named '{bad}'.*must contain 'loss'"):
            clf.loss(x, torch.tensor([0, 1, 2, 3]))
