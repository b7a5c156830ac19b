"""RegMixupClassifier (RegMixup, Pinto et al., NeurIPS 2022) against the paper's loss and
the official code's mean over the concatenated batch."""

import math

import pytest
import torch
from mbtest.learnable import forward_batches_and_train
from mbtest.mixers import seeded
from mbtest.repo import method_of
from mbtest.training import train_and_resume

from mixbench.mixers import ManifoldMix, Mixup
from mixbench.models import RegMixupClassifier


def classifier(mixer, **kw):
    torch.manual_seed(0)
    return RegMixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1},
        head={"type": "LinearHead", "num_classes": 3},
        mixer=mixer,
        **kw,
    )


def ce(z, c):
    return math.log(sum(math.exp(v) for v in z)) - z[c]


def test_loss_hand_computed():
    # logits = the three pixels of each image (the network is replaced by the identity)
    x = torch.tensor([[[[1.0, 0.0, 0.0]]], [[[0.0, 2.0, -1.0]]]])
    y = torch.tensor([0, 1])
    lam = Mixup(alpha=10.0, pairing="reverse", generator=seeded(3))(x, y).lam[0].item()
    mixed = [
        [lam * a + (1 - lam) * b for a, b in zip(p, q)]
        for p, q in (([1, 0, 0], [0, 2, -1]), ([0, 2, -1], [1, 0, 0]))
    ]
    clean = (ce([1, 0, 0], 0) + ce([0, 2, -1], 1)) / 2
    mix = sum(lam * ce(z, ya) + (1 - lam) * ce(z, yb) for z, ya, yb in zip(mixed, (0, 1), (1, 0))) / 2
    for kw, factor in (({}, 0.5), ({"mean_over_both": False}, 1.0)):
        for eta in (1.0, 0.3):
            clf = classifier(Mixup(alpha=10.0, pairing="reverse", generator=seeded(3)), eta=eta, **kw)
            clf.logits = lambda inputs, stage_hook=None: inputs.flatten(1)
            losses = clf.loss(x, y)
            assert set(losses) == {"loss", "mix_loss"}
            assert losses["loss"].item() == pytest.approx(factor * clean, rel=1e-6)
            assert losses["mix_loss"].item() == pytest.approx(factor * eta * mix, rel=1e-6)


def test_official_value_is_one_mean_over_the_concatenated_batch():
    # the official loss: lam CE(z, [y, y_a]) + (1 - lam) CE(z, [y, y_b]), means over 2B
    x = torch.randn(4, 1, 8, 8, generator=seeded(1))
    y = torch.tensor([0, 1, 2, 1])
    clf = classifier(Mixup(alpha=10.0, generator=seeded(5)))
    out = Mixup(alpha=10.0, generator=seeded(5))(x, y)
    with torch.no_grad():
        losses = clf.loss(x, y)
        z = clf.logits(torch.cat([x, out.inputs]))
    lam = out.lam[0]
    ya, yb = torch.cat([y, out.y_a]), torch.cat([y, out.y_b])
    ce_ = torch.nn.functional.cross_entropy
    official = lam * ce_(z, ya) + (1 - lam) * ce_(z, yb)
    torch.testing.assert_close(losses["loss"] + losses["mix_loss"], official)


def test_one_forward_of_clean_and_mixed_and_both_terms_train():
    clf = classifier(Mixup(alpha=10.0, generator=seeded(0)))
    x = torch.randn(4, 1, 8, 8, generator=seeded(2))
    batches, losses = forward_batches_and_train(clf, x, torch.tensor([0, 1, 2, 0]))
    assert batches == [8]  # one forward, BatchNorm sees all 2B
    assert set(losses) == {"loss", "mix_loss"}
    # eta = 0: ordinary training on the clean batch (the mixed term is zero)
    losses = classifier(Mixup(alpha=10.0, generator=seeded(0)), eta=0.0).loss(x, torch.tensor([0, 1, 2, 0]))
    assert losses["mix_loss"].item() == 0.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="hidden-stage mixer ManifoldMix"):
        classifier(ManifoldMix(alpha=2.0)).loss(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        classifier(None, eta=-1.0)
    with pytest.raises(ValueError, match="mean_over_both must be true or false"):
        classifier(None, mean_over_both="yes")


def test_method_file_builds_the_published_setting():
    from mixbench.registry import MODELS

    method = method_of("regmixup")
    assert method["name"] == "RegMixup" and set(method) == {"name", "classifier", "mixer"}
    assert method["mixer"] == {"type": "Mixup", "alpha": 10.0}
    cfg = dict(
        method["classifier"],
        mixer=method["mixer"],
        backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4},
        head={"type": "LinearHead", "num_classes": 10},
    )
    clf = MODELS.build(cfg)
    assert isinstance(clf, RegMixupClassifier) and (clf.eta, clf.mean_over_both) == (1.0, True)
    assert isinstance(clf.mixer, Mixup) and clf.mixer.alpha == 10.0


def test_trains_two_epochs_on_digits_and_resumes(tmp_path):
    result, _ = train_and_resume(tmp_path, "regmixup")
    assert result["run"]["method"] == "RegMixup"
