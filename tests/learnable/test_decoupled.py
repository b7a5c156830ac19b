"""DecoupledMixupLoss (DecoupleMix, NeurIPS 2023) against the paper's formula."""

import math

import pytest
import torch
from mbtest.training import train_on_digits

from mixbench.mixers import MixOutput
from mixbench.models import DecoupledMixupLoss, MixedCrossEntropy


def mix(y_a, y_b, lam, soft=None):
    y_a, y_b = torch.tensor(y_a), torch.tensor(y_b)
    return MixOutput(
        inputs=torch.zeros(len(y_a), 1, 2, 2),
        y_a=y_a,
        y_b=y_b,
        lam=torch.tensor(lam, dtype=torch.float32),
        index=torch.arange(len(y_a)),
        soft_targets=soft,
    )


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
    result = train_on_digits(tmp_path, "decouple_cutmix")
    assert result["run"]["method"] == "DecoupleMix+CutMix"


def test_mixup_method_builds_the_loss():
    from mbtest.repo import model_of

    from mixbench.registry import MODELS

    model = model_of("decouple_mixup")
    loss = MODELS.build(model["loss"])
    assert isinstance(loss, DecoupledMixupLoss) and (loss.eta, loss.mode, loss.lam_power) == (
        0.1,
        "both",
        1.0,
    )
    assert model["mixer"] == {"type": "Mixup", "alpha": 0.2}


def hand_regularizer(logits, y_a, y_b, w_a, w_b):
    """sum_i (w_a[i] nll(a | b removed) + w_b[i] nll(b | a removed)) / B, by explicit
    softmaxes over the remaining classes."""
    total = 0.0
    for z, a, b, wa, wb in zip(logits.tolist(), y_a, y_b, w_a, w_b):
        keep_a = [c for c in range(len(z)) if c != b]
        keep_b = [c for c in range(len(z)) if c != a]
        nll_a = -z[a] + math.log(sum(math.exp(z[c]) for c in keep_a))
        nll_b = -z[b] + math.log(sum(math.exp(z[c]) for c in keep_b))
        total += wa * nll_a + wb * nll_b
    return total / len(y_a)


@pytest.mark.parametrize("mode, power", [("less", 0.5), ("more", 0.5), ("both", 1.0)])
def test_openmixup_eta_order_bug(mode, power):
    """OpenMixup applies eta_weight[i] to lam_k[i] = label[0, label[0] > eps], the label values
    of the first mixed sample in class-index order (cross_entropy_loss.py:157-180), and
    skips the term when len(set(lam_k)) < 2 (lam = 0.5)."""
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    eta, lam = 0.2, 0.3
    w = {
        "less": (eta * lam**power, 0.0),
        "more": (0.0, eta * (1 - lam) ** power),
        "both": (eta * lam**power, eta * (1 - lam) ** power),
    }[mode]
    loss = DecoupledMixupLoss(eta=eta, mode=mode, lam_power=power, openmixup_eta_order_bug=True)
    right = DecoupledMixupLoss(eta=eta, mode=mode, lam_power=power)
    # the first sample is unmixed (same class): the second one decides; 1 < 4: in order
    y_a, y_b = [2, 1, 5, 0], [2, 4, 3, 3]
    out = mix(y_a, y_b, [lam] * 4)
    ce = MixedCrossEntropy()(logits, out).item()
    unmixed = [0.0, 1.0, 1.0, 1.0]
    ordered = hand_regularizer(logits, y_a, y_b, [w[0] * m for m in unmixed], [w[1] * m for m in unmixed])
    assert loss(logits, out).item() == pytest.approx(ce + ordered, rel=1e-6)
    assert right(logits, out).item() == pytest.approx(ce + ordered, rel=1e-6)
    # the second sample now has y_a > y_b: every sample's weights are swapped
    y_a, y_b = [2, 4, 5, 0], [2, 1, 3, 3]
    out = mix(y_a, y_b, [lam] * 4)
    ce = MixedCrossEntropy()(logits, out).item()
    swapped = hand_regularizer(logits, y_a, y_b, [w[1] * m for m in unmixed], [w[0] * m for m in unmixed])
    assert loss(logits, out).item() == pytest.approx(ce + swapped, rel=1e-6)
    ordered = hand_regularizer(logits, y_a, y_b, [w[0] * m for m in unmixed], [w[1] * m for m in unmixed])
    assert right(logits, out).item() == pytest.approx(ce + ordered, rel=1e-6)
    # lam = 0.5: no regularizer at all
    out = mix(y_a, y_b, [0.5] * 4)
    assert loss(logits, out).item() == pytest.approx(MixedCrossEntropy()(logits, out).item(), rel=1e-6)
