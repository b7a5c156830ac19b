"""DecoupledMixupLoss (DecoupleMix, NeurIPS 2023) against the paper's formula."""
import math

import pytest
import torch

from mixbench.mixers import MixOutput
from mixbench.models import DecoupledMixupLoss, MixedCrossEntropy
from tests.mixers.helpers import train_two_epochs_on_digits


def mix(y_a, y_b, lam, soft=None):
    y_a, y_b = torch.tensor(y_a), torch.tensor(y_b)
    return MixOutput(inputs=torch.zeros(len(y_a), 1, 2, 2), y_a=y_a, y_b=y_b,
                     lam=torch.tensor(lam, dtype=torch.float32), index=torch.arange(len(y_a)),
                     soft_targets=soft)


def test_equals_formula_on_hand_computed_logits():
    # sample 0: classes a=0, b=1, lam=0.25; logits (1, 2, 0): e, e^2, 1
    # sample 1: classes a=2, b=0, lam=0.6;  logits (0, 0, 3)
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    out = mix([0, 2], [1, 0], [0.25, 0.6])
    e = math.e
    ce0 = -(0.25 * math.log(e / (e + e**2 + 1)) + 0.75 * math.log(e**2 / (e + e**2 + 1)))
    ce1 = -(0.6 * math.log(e**3 / (2 + e**3)) + 0.4 * math.log(1 / (2 + e**3)))
    # decoupled: a with b removed, b with a removed
    nll0_a, nll0_b = -math.log(e / (e + 1)), -math.log(e**2 / (e**2 + 1))
    nll1_a, nll1_b = -math.log(e**3 / (e**3 + 1)), -math.log(1 / (1 + 1))
    eta = 0.3
    # mode both, lam_power 1: w_a = eta * lam, w_b = eta * (1 - lam)
    both = ((ce0 + eta * (0.25 * nll0_a + 0.75 * nll0_b)) + (ce1 + eta * (0.6 * nll1_a + 0.4 * nll1_b))) / 2
    got = DecoupledMixupLoss(eta=eta, mode="both", lam_power=1.0)(logits, out)
    assert got.item() == pytest.approx(both, rel=1e-6)
    # the paper's constant eta (lam_power 0)
    paper = ((ce0 + eta * (nll0_a + nll0_b)) + (ce1 + eta * (nll1_a + nll1_b))) / 2
    assert DecoupledMixupLoss(eta=eta, lam_power=0.0)(logits, out).item() == pytest.approx(paper, rel=1e-6)
    # mode less, thr 0.5, power 0.5: only the minority class (a for lam 0.25, b for lam 0.6)
    less = ((ce0 + eta * 0.25**0.5 * nll0_a) + (ce1 + eta * 0.4**0.5 * nll1_b)) / 2
    got = DecoupledMixupLoss(eta=eta, mode="less", thr=0.5, lam_power=0.5)(logits, out)
    assert got.item() == pytest.approx(less, rel=1e-6)
    more = ((ce0 + eta * 0.75**0.5 * nll0_b) + (ce1 + eta * 0.6**0.5 * nll1_a)) / 2
    got = DecoupledMixupLoss(eta=eta, mode="more", thr=0.5, lam_power=0.5)(logits, out)
    assert got.item() == pytest.approx(more, rel=1e-6)


def test_unmixed_samples_and_eta_zero_reduce_to_mixup_ce():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    out = mix([0, 1, 2, 3], [0, 2, 2, 1], [0.3, 1.0, 0.5, 0.0])  # same class / lam 1 / same / lam 0
    assert torch.allclose(DecoupledMixupLoss(eta=1.0)(logits, out), MixedCrossEntropy()(logits, out))
    out = mix([0, 1], [2, 3], [0.3, 0.7])
    assert torch.allclose(DecoupledMixupLoss(eta=0.0)(logits[:2], out), MixedCrossEntropy()(logits[:2], out))
    assert DecoupledMixupLoss(eta=1.0)(logits[:2], out) > MixedCrossEntropy()(logits[:2], out)


def test_gradient_flows_and_errors():
    logits = torch.randn(2, 4, requires_grad=True)
    DecoupledMixupLoss()(logits, mix([0, 1], [2, 3], [0.3, 0.7])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="soft_targets"):
        DecoupledMixupLoss()(logits, mix([0, 1], [2, 3], [0.3, 0.7], soft=torch.full((2, 4), 0.25)))
    with pytest.raises(ValueError, match="mode"):
        DecoupledMixupLoss(mode="sometimes")
    with pytest.raises(ValueError, match="eta"):
        DecoupledMixupLoss(eta=-1)


def test_trains_two_epochs_on_digits(tmp_path):
    result = train_two_epochs_on_digits(tmp_path, "decouple_cutmix")
    assert result["run"]["method"] == "DecoupleMix+CutMix"


def test_mixup_method_builds_the_loss():
    from mbtest import model_of
    from mixbench.registry import MODELS

    model = model_of("decouple_mixup")
    loss = MODELS.build(model["loss"])
    assert isinstance(loss, DecoupledMixupLoss) and (loss.eta, loss.mode, loss.lam_power) == (0.1, "both", 1.0)
    assert model["mixer"] == {"type": "Mixup", "alpha": 0.2}
