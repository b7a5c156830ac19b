"""SUMix (ECCV 2024): semantic distance, mix-ratio learning, uncertainty term, errors, the
method file, digits training and exact resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import assert_same_training_state
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.mixers import CutMix
from mixbench.mixers.base import MixOutput
from mixbench.models.classifiers.sumix import SUMixClassifier, semantic_distance, sumix_lambda
from mixbench.registry import MODELS

RESNET = {"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}
HEAD = {"type": "LinearHead", "num_classes": 5}


def tiny_sumix(**kw):
    torch.manual_seed(0)
    kw.setdefault("mixer", {"type": "CutMix", "alpha": 1.0})
    return SUMixClassifier(backbone=RESNET, head=HEAD, **kw)


def test_semantic_distance_on_hand_computed_probabilities():
    p_mix = torch.tensor([[0.5, 0.3, 0.2]])
    p_own = torch.tensor([[0.6, 0.1, 0.3]])
    # the other image's class (1) is removed from p_own: q = [0.6, 0, 0.3]
    diff = [0.5 - 0.6, 0.3 - 0.0, 0.2 - 0.3]
    soft = [math.exp(d) / sum(math.exp(e) for e in diff) for d in diff]
    norm = math.sqrt(sum(s * s for s in soft))
    expected = [2.0 * s / norm for s in soft]
    got = semantic_distance(p_mix, p_own, torch.tensor([1]), 2.0)
    assert got[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx([0.97294, 1.45146, 0.97294], abs=1e-4)  # worked by hand


def test_lambda_is_the_reweighted_quotient_and_survives_underflow():
    lam = torch.tensor([0.3, 0.5, 0.0, 1.0, 0.7])
    da = torch.tensor([0.2, 1.0, 0.5, 0.5, 300.0])
    db = torch.tensor([0.9, 1.0, 0.1, 0.1, 301.0])
    got = sumix_lambda(lam, da, db)
    for k in range(3):
        a, b = lam[k].item() * math.exp(-da[k].item()), (1 - lam[k].item()) * math.exp(-db[k].item())
        assert got[k].item() == pytest.approx(a / (a + b), rel=1e-6)
    assert got[2].item() == 0.0 and got[3].item() == 1.0
    # e^-300 underflows float32 (the direct quotient is 0/0); the log-odds form is exact:
    # 0.7 e^-300 / (0.7 e^-300 + 0.3 e^-301) = 0.7 / (0.7 + 0.3 / e)
    assert (0.7 * math.exp(-300.0) == 0.0) is False and torch.exp(torch.tensor(-300.0)).item() == 0.0
    assert got[4].item() == pytest.approx(0.7 / (0.7 + 0.3 / math.e), rel=1e-6)


def test_direction_of_the_official_distance_on_a_hand_built_pair():
    # Two images of classes 0 and 1, mixed with lam = 0.5, and the mixed image still predicted
    # as class 0. The official distance is softmax(p~ - q) at the component's class: it is
    # *small* where the mixed image lost that class's probability (p~[c] << q[c]), so the
    # official formula gives the larger weight to the component whose class probability fell
    # most -- here class 1 for both samples (documented in docs/learnable.md).
    clf = tiny_sumix()
    y_a, index = torch.tensor([0, 1]), torch.tensor([1, 0])
    out = MixOutput(
        inputs=torch.zeros(2, 1, 4, 4), y_a=y_a, y_b=y_a[index], lam=torch.full((2,), 0.5), index=index
    )
    clean = torch.tensor([[6.0, 0, 0, 0, 0], [0, 6.0, 0, 0, 0]])
    mixed = torch.tensor([[5.0, 1.0, 0, 0, 0], [5.0, 1.0, 0, 0, 0]])
    lam_hat, alpha_a, alpha_b = clf.semantic_weights(clean, mixed, out)
    p, pm = clean.softmax(1), mixed.softmax(1)
    # sample 0: own class 0 (partner class 1 zeroed in its clean probabilities), partner class 1
    qa, qb = p[0].clone(), p[1].clone()
    qa[1], qb[0] = 0, 0
    da, db = (pm[0] - qa).softmax(0), (pm[0] - qb).softmax(0)
    dist_a, dist_b = 2 * da[0] / da.norm(), 2 * db[1] / db.norm()  # scale = batch size 2
    assert alpha_a[0, 0] == pytest.approx(dist_a.item(), rel=1e-6)
    assert alpha_b[0, 1] == pytest.approx(dist_b.item(), rel=1e-6)
    expected = 0.5 * math.exp(-dist_a) / (0.5 * math.exp(-dist_a) + 0.5 * math.exp(-dist_b))
    assert lam_hat[0].item() == pytest.approx(expected, rel=1e-6)
    assert lam_hat[0] < 0.5 < lam_hat[1]  # class 1 gets the larger weight in both
    assert torch.allclose(lam_hat[0] + lam_hat[1], torch.tensor(1.0), atol=1e-6)  # mirrored pair


def reference_loss(clf, x, y, out, gamma, batch_mean=False):
    """SUMix's loss written sample by sample after the official IN_loss (direct quotient)."""

    def heads(inp):
        feats = clf.neck(clf.backbone(inp))
        z = clf.head(feats)
        u = clf.uncertainty(feats).softmax(1)
        return z, u / u.norm(dim=1, keepdim=True)

    z1, u1 = heads(x)
    zm, um = heads(out.inputs)
    b = x.shape[0]
    s1, sm = z1.detach().softmax(1), zm.detach().softmax(1)
    ce = lambda logits, c: -logits.log_softmax(0)[c]  # noqa: E731
    lam_hat, ce_a, ce_b, unc = [], [], [], []
    for i in range(b):
        j, a, c, lam = out.index[i].item(), y[i].item(), y[out.index[i]].item(), out.lam[i].item()
        qa, qb = s1[i].clone(), s1[j].clone()
        qa[c], qb[a] = 0, 0
        da, db = (sm[i] - qa).softmax(0), (sm[i] - qb).softmax(0)
        alpha_a, alpha_b = b * da / da.norm(), b * db / db.norm()
        wa, wb = lam * torch.exp(-alpha_a[a]), (1 - lam) * torch.exp(-alpha_b[c])
        lam_hat.append(wa / (wa + wb))
        ce_a.append(ce(zm[i], a))
        ce_b.append(ce(zm[i], c))
        unc.append(
            lam * ce(torch.exp(-(alpha_a + u1[i] + um[i])), a)
            + (1 - lam) * ce(torch.exp(-(alpha_b + u1[j] + um[i])), c)
        )
    lam_hat, ce_a, ce_b = torch.stack(lam_hat), torch.stack(ce_a), torch.stack(ce_b)
    if batch_mean:
        mix = ce_a.mean() * lam_hat.mean() + ce_b.mean() * (1 - lam_hat).mean()
    else:
        mix = (lam_hat * ce_a + (1 - lam_hat) * ce_b).mean()
    return mix, gamma * torch.stack(unc).mean(), lam_hat


@pytest.mark.parametrize("weighting", ["sample", "batch_mean"])
def test_loss_equals_the_definition_sample_by_sample(weighting):
    clf = tiny_sumix(gamma=0.7, label_weighting=weighting).eval()  # eval: BN as a function
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    clf.mixer.generator = torch.Generator().manual_seed(3)
    losses = clf.loss(x, y)
    assert set(losses) == {"loss", "uncertain_loss"}
    out = CutMix(alpha=1.0, generator=torch.Generator().manual_seed(3))(x, y)
    assert 0 < out.lam[0] < 1 and out.mask is not None
    mix, unc, lam_hat = reference_loss(clf, x, y, out, 0.7, batch_mean=weighting == "batch_mean")
    assert torch.allclose(losses["loss"], mix, atol=1e-5)
    assert torch.allclose(losses["uncertain_loss"], unc, atol=1e-5)
    assert not torch.allclose(lam_hat, out.lam, atol=1e-3)  # the labels were reweighted
    assert bool(((lam_hat >= 0) & (lam_hat <= 1)).all())


def test_gradients_reach_the_uncertainty_layer_only_through_its_term():
    clf = tiny_sumix()
    x, y = torch.randn(6, 1, 16, 16), torch.arange(6) % 5
    losses = clf.loss(x, y)
    losses["loss"].backward(retain_graph=True)
    assert clf.uncertainty.weight.grad is None and clf.head.fc.weight.grad.abs().sum() > 0
    clf.zero_grad(set_to_none=True)
    losses["uncertain_loss"].backward()
    assert clf.uncertainty.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in clf.backbone.parameters())  # clean and mixed passes
    assert clf.head.fc.weight.grad is None  # alpha is detached: the head gets nothing


def test_unmixed_batch_and_no_uncertainty_layer():
    clf = tiny_sumix(mixer={"type": "CutMix", "alpha": 1.0, "prob": 0.0}, gamma=0.5).eval()
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    losses = clf.loss(x, y)
    z = clf.logits(x)
    assert torch.allclose(losses["loss"], F.cross_entropy(z, y), atol=1e-6)  # lam^ = 1
    # without the layer beta is built from the logits themselves (official is_norm=False)
    bare = tiny_sumix(uncertainty_layer=False)
    assert bare.uncertainty is None
    logits, u = bare.forward_both(x)
    assert u is logits


def test_same_seed_same_loss():
    x, y = torch.randn(6, 1, 16, 16), torch.arange(6) % 5
    runs = []
    for _ in range(2):
        clf = tiny_sumix()
        clf.mixer.generator = torch.Generator().manual_seed(7)
        runs.append(clf.loss(x, y))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="MixedCrossEntropy"):
        tiny_sumix(loss={"type": "DecoupledMixupLoss"})
    with pytest.raises(ValueError, match="label_weighting"):
        tiny_sumix(label_weighting="mean")
    with pytest.raises(ValueError, match="gamma"):
        tiny_sumix(gamma=-1)
    with pytest.raises(ValueError, match="distance_scale"):
        tiny_sumix(distance_scale=0)
    clf = tiny_sumix(mixer={"type": "ManifoldMix", "alpha": 1.0})
    with pytest.raises(ValueError, match="input mixer"):
        clf.loss(torch.randn(4, 1, 16, 16), torch.arange(4))


def test_method_file_is_the_official_cifar100_setting():
    assert method_of("sumix")["name"] == "SUMix"
    clf = MODELS.build(
        model_of("sumix", "resnet18_cifar", head={"num_classes": 100}, backbone={**RESNET, "width": 8})
    )
    assert isinstance(clf, SUMixClassifier) and clf.gamma == 0.5 and clf.distance_scale is None
    assert clf.label_weighting == "sample" and clf.uncertainty.out_features == 100
    assert type(clf.mixer).__name__ == "CutMix" and clf.mixer.alpha == 0.2


def test_resnet_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {
            "backbone": {**RESNET, "width": 8}
        },  # width 4 crashed natively here (free(): invalid next size)
        "meta": {"backbone": "resnet8_w8"},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "sumix", overrides)
    assert result["run"]["method"] == "SUMix"
    logged = "".join(p.read_text() for p in (tmp_path / "work").rglob("scalars.json"))
    assert "uncertain_loss" in logged
    assert_same_training_state(a, b, ["backbone", "head", "uncertainty"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    x, y = torch.randn(6, 1, 16, 16), torch.arange(6) % 5
    losses = []
    for device in ("cpu", "cuda"):
        clf = tiny_sumix().eval().to(device)
        clf.mixer.generator = torch.Generator().manual_seed(3)
        losses.append({k: v.item() for k, v in clf.loss(x.to(device), y.to(device)).items()})
    for k in losses[0]:
        assert losses[1][k] == pytest.approx(losses[0][k], rel=1e-4, abs=1e-5)
