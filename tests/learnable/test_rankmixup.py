"""RankMixupClassifier (RankMixup, Noh et al., ICCV 2023): MRL and M-NDCG against values
worked by hand, against the official code's formulas, the mixes and forwards of one step,
errors, the method files, reproducibility, CPU/CUDA, digits training and exact resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import forward_batches_and_train
from mbtest.mixers import seeded
from mbtest.repo import method_of, model_of
from mbtest.training import train_and_resume

from mixbench.mixers import ManifoldMix, Mixup
from mixbench.models import RankMixupClassifier
from mixbench.models.classifiers.rankmixup import mixup_ranking_loss, mndcg
from mixbench.registry import MODELS

RESNET = {"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}


def classifier(mixer=None, num_classes=3, **kw):
    torch.manual_seed(0)
    return RankMixupClassifier(
        backbone=RESNET, head={"type": "LinearHead", "num_classes": num_classes}, mixer=mixer, **kw
    )


def identity_network(clf):
    """Logits = the pixels of each image (the network replaced by the identity)."""
    clf.logits = lambda inputs, stage_hook=None: inputs.flatten(1)
    return clf


def ce(z, c):
    return math.log(sum(math.exp(v) for v in z)) - z[c]


def softmax_max(z):
    return max(math.exp(v) for v in z) / sum(math.exp(v) for v in z)


def test_mndcg_worked_by_hand():
    # raw confidence 0.9; mixes with confidences (0.6, 0.8) and relevances (0.7, 0.9): in the
    # relevance order the list is raw (rel 1, conf .9), mix 2 (rel .9, conf .8), mix 1 (.7, .6)
    dcg = 0.9 / math.log2(2) + 0.8 / math.log2(3) + 0.6 / math.log2(4)
    idcg = 1.0 / math.log2(2) + 0.9 / math.log2(3) + 0.7 / math.log2(4)
    assert dcg == pytest.approx(1.704743, abs=1e-6) and idcg == pytest.approx(1.917836, abs=1e-6)
    got = mndcg(torch.tensor([0.9]), torch.tensor([[0.6, 0.8]]), torch.tensor([[0.7, 0.9]]))
    assert got.item() == pytest.approx(dcg / idcg, rel=1e-6)
    # confidences above their relevances: the inverse ratio IDCG / DCG, still <= 1
    got = mndcg(torch.tensor([1.0]), torch.tensor([[0.9, 0.8]]), torch.tensor([[0.5, 0.6]]))
    dcg = 1.0 + 0.8 / math.log2(3) + 0.9 / math.log2(4)
    idcg = 1.0 + 0.6 / math.log2(3) + 0.5 / math.log2(4)
    assert got.item() == pytest.approx(idcg / dcg, rel=1e-6)
    # confidences equal to the relevances: NDCG 1, whatever the order of the mixes
    rel = torch.tensor([[0.55, 0.8, 0.7], [1.0, 0.6, 0.6]])
    assert torch.allclose(mndcg(torch.ones(2), rel, rel), torch.ones(2))


def test_mndcg_is_a_ranking_with_a_stable_order_on_ties():
    # two mixes of equal relevance: the first listed keeps the better discount
    a = mndcg(torch.tensor([1.0]), torch.tensor([[0.9, 0.1]]), torch.tensor([[0.7, 0.7]]))
    b = mndcg(torch.tensor([1.0]), torch.tensor([[0.1, 0.9]]), torch.tensor([[0.7, 0.7]]))
    dcg_a = 1.0 + 0.9 / math.log2(3) + 0.1 / math.log2(4)
    idcg = 1.0 + 0.7 / math.log2(3) + 0.7 / math.log2(4)
    assert idcg > dcg_a and a.item() == pytest.approx(dcg_a / idcg, rel=1e-6)
    assert b.item() != pytest.approx(a.item())


def test_mrl_worked_by_hand_and_the_official_reduction():
    raw = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0], [0.5, 0.5, 3.0]])
    mixed = torch.tensor([[[2.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 1.0, 0.0]]])  # (M=1, B, K)
    relevance = torch.tensor([[0.6, 1.0, 0.8]])  # sample 1 is paired with its own class
    hinge = [max(0.0, 2.5 - 1.0 + 2.0), max(0.0, 0.5 - 2.0 + 2.0), max(0.0, 1.0 - 3.0 + 2.0)]
    assert hinge == [3.5, 0.5, 0.0]
    got = mixup_ranking_loss(raw, mixed, relevance, margin=2.0)
    assert got.item() == pytest.approx((3.5 + 0.0) / 3)
    # official: mask (B,) times hinge (B, 1) broadcasts to (B, B): mean(mask) * mean(hinge)
    official = (torch.tensor([1.0, 0.0, 1.0]) * torch.tensor(hinge)[:, None]).mean()
    assert official.item() == pytest.approx(2 / 3 * 4.0 / 3)
    assert mixup_ranking_loss(raw, mixed, relevance, 2.0, "official").item() == pytest.approx(official.item())
    # a weight rounded just below 1 (float32 lam + (1 - lam)) still counts as unmixed
    almost = torch.tensor([[0.6, 1.0 - 6e-8, 0.8]])
    assert mixup_ranking_loss(raw, mixed, almost, 2.0).item() == pytest.approx(3.5 / 3)


def test_mrl_step_hand_computed_with_the_identity_network():
    x = torch.tensor([[[[1.0, 0.0, 0.0]]], [[[0.0, 2.0, -1.0]]], [[[0.5, 0.5, 3.0]]]])
    y = torch.tensor([0, 1, 0])
    lam = Mixup(alpha=2.0, pairing="reverse", generator=seeded(3))(x, y).lam[0].item()
    pixels = [[1.0, 0.0, 0.0], [0.0, 2.0, -1.0], [0.5, 0.5, 3.0]]
    partner = [2, 1, 0]  # reverse pairing of 3 samples
    mixed = [[lam * a + (1 - lam) * b for a, b in zip(pixels[i], pixels[partner[i]])] for i in range(3)]
    is_mixed = [y[i] != y[partner[i]] for i in range(3)]  # all pairs are of class 0: none mixed
    assert is_mixed == [False, False, False]
    clf = identity_network(
        classifier(Mixup(alpha=2.0, pairing="reverse", generator=seeded(3)), ranking="mrl", margin=0.5)
    )
    losses = clf.loss(x, y)
    assert set(losses) == {"loss", "rank_loss"}
    assert losses["loss"].item() == pytest.approx(
        sum(ce(p, c) for p, c in zip(pixels, [0, 1, 0])) / 3, rel=1e-6
    )
    assert losses["rank_loss"].item() == 0.0
    y = torch.tensor([0, 1, 2])  # now samples 0 and 2 are mixed
    clf = identity_network(
        classifier(
            Mixup(alpha=2.0, pairing="reverse", generator=seeded(3)), ranking="mrl", margin=0.5, weight=0.3
        )
    )
    losses = clf.loss(x, y)
    hinge = [max(0.0, max(mixed[i]) - max(pixels[i]) + 0.5) for i in range(3)]
    assert losses["rank_loss"].item() == pytest.approx(0.3 * (hinge[0] + hinge[2]) / 3, rel=1e-6)


def test_mndcg_step_hand_computed_with_the_identity_network():
    x = torch.tensor([[[[1.0, 0.0, 0.0]]], [[[0.0, 2.0, -1.0]]]])
    y = torch.tensor([0, 1])
    pixels = [[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]]
    draws = Mixup(alpha=2.0, pairing="reverse", generator=seeded(7))
    lams = [draws(x, y).lam[0].item() for _ in range(3)]  # the three mixes draw in turn
    assert len(set(lams)) == 3
    expected = []
    for i in range(2):
        j = 1 - i
        conf = [softmax_max([lam * a + (1 - lam) * b for a, b in zip(pixels[i], pixels[j])]) for lam in lams]
        rel = [max(lam, 1 - lam) for lam in lams]
        order = sorted(range(3), key=lambda m: -rel[m])
        c = [softmax_max(pixels[i])] + [conf[m] for m in order]
        r = [1.0] + [rel[m] for m in order]
        dcg = sum(v / math.log2(k + 2) for k, v in enumerate(c))
        idcg = sum(v / math.log2(k + 2) for k, v in enumerate(r))
        expected.append(1 - (dcg / idcg if idcg > dcg else idcg / dcg))
    clf = identity_network(classifier(Mixup(alpha=2.0, pairing="reverse", generator=seeded(7))))
    assert (clf.ranking, clf.num_mixes, clf.weight) == ("mndcg", 3, 0.1)
    losses = clf.loss(x, y)
    assert losses["rank_loss"].item() == pytest.approx(0.1 * sum(expected) / 2, rel=1e-5)
    assert losses["loss"].item() == pytest.approx((ce(pixels[0], 0) + ce(pixels[1], 1)) / 2, rel=1e-6)


def official_mndcg(outputs, mixup, target_re, num_mixes, num_classes):
    """The official ``RankMixup_MNDCG.get_indcg`` loss, re-derived from its definition:
    ``mixup`` (M*B, K) logits and ``target_re`` (M*B, K) mixed one-hot targets, M-major."""
    mixup = F.softmax(mixup.reshape(num_mixes, -1, num_classes), 2)
    target_re = target_re.reshape(num_mixes, -1, num_classes)
    raw = F.softmax(outputs, 1).max(1, keepdim=True)[0]
    conf, rel = mixup.max(2)[0].t(), target_re.max(2)[0].t()
    order = torch.argsort(rel, descending=True)
    disc = torch.log2(torch.arange(1, 2 + num_mixes).float() + 1)
    dcg = (torch.cat([raw, conf.gather(1, order)], 1) / disc).sum(1)
    idcg = (torch.cat([torch.ones_like(raw), rel.gather(1, order)], 1) / disc).sum(1)
    ndcg = torch.where(idcg > dcg, dcg / idcg, idcg / dcg)
    return (1 - ndcg).mean()


def test_equals_the_official_loss_on_a_real_network():
    x = torch.randn(6, 1, 8, 8, generator=seeded(1))
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    clf = classifier(Mixup(alpha=2.0, generator=seeded(5)))
    with torch.no_grad():
        losses = clf.loss(x, y)
        draws = Mixup(alpha=2.0, generator=seeded(5))
        outs = [draws(x, y) for _ in range(3)]
        outputs = clf.logits(x)
        mixup = clf.logits(torch.cat([o.inputs for o in outs]))
    onehot = F.one_hot(y, 3).float()
    target_re = torch.cat([o.lam[:, None] * onehot + (1 - o.lam[:, None]) * onehot[o.index] for o in outs])
    ranked = official_mndcg(outputs, mixup, target_re, 3, 3)
    total = F.cross_entropy(outputs, y) + 0.1 * ranked
    torch.testing.assert_close(losses["loss"] + losses["rank_loss"], total)


def test_one_raw_forward_one_forward_of_the_mixes_and_both_terms_train():
    clf = classifier(Mixup(alpha=2.0, generator=seeded(0)))
    x = torch.randn(4, 1, 8, 8, generator=seeded(2))
    batches, losses = forward_batches_and_train(clf, x, torch.tensor([0, 1, 2, 0]))
    assert batches == [4, 12]  # the raw batch, then the 3 mixes together
    assert set(losses) == {"loss", "rank_loss"}
    # the mixes draw their own lambdas and pairings
    outs = clf.mixes(x, torch.tensor([0, 1, 2, 0]))
    assert len({o.lam[0].item() for o in outs}) == 3
    assert len({tuple(o.index.tolist()) for o in outs}) > 1


def test_reproducible_from_a_seed():
    x, y = torch.randn(4, 1, 8, 8, generator=seeded(4)), torch.tensor([0, 1, 2, 0])
    runs = [classifier(Mixup(alpha=2.0, generator=seeded(9))).loss(x, y) for _ in range(2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = classifier(Mixup(alpha=2.0, generator=seeded(10))).loss(x, y)
    assert not torch.equal(other["rank_loss"], runs[0]["rank_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    x, y = torch.randn(6, 1, 16, 16, generator=seeded(0)), torch.arange(6) % 3
    for ranking in ("mndcg", "mrl"):
        losses = []
        for device in ("cpu", "cuda"):
            clf = classifier(Mixup(alpha=2.0, generator=seeded(3)), ranking=ranking).eval().to(device)
            losses.append({k: v.item() for k, v in clf.loss(x.to(device), y.to(device)).items()})
        for k in losses[0]:
            assert losses[1][k] == pytest.approx(losses[0][k], rel=1e-4, abs=1e-5), (ranking, k)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="hidden-stage mixer ManifoldMix"):
        classifier(ManifoldMix(alpha=2.0)).loss(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="ranking must be one of 'mndcg', 'mrl'"):
        classifier(ranking="ndcg")
    with pytest.raises(ValueError, match="num_mixes must be an integer >= 1"):
        classifier(num_mixes=0)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        classifier(weight=-0.1)
    with pytest.raises(ValueError, match="mrl_reduction must be one of"):
        classifier(ranking="mrl", mrl_reduction="mean")


def test_method_files_build_the_published_settings():
    for name, ranking, mixes in (("rankmixup", "mndcg", 3), ("rankmixup_mrl", "mrl", 1)):
        method = method_of(name)
        assert set(method) == {"name", "classifier", "mixer"}
        assert method["mixer"] == {"type": "Mixup", "alpha": 2.0}
        clf = MODELS.build(model_of(name, head={"num_classes": 10}))
        assert isinstance(clf, RankMixupClassifier) and isinstance(clf.mixer, Mixup)
        assert (clf.ranking, clf.num_mixes, clf.weight, clf.mixer.alpha) == (ranking, mixes, 0.1, 2.0)
    assert method_of("rankmixup")["name"] == "RankMixup"
    assert (clf.margin, clf.mrl_reduction) == (2.0, "sample")
    # the paper's number of mixes when none is given
    assert classifier(ranking="mrl").num_mixes == 1 and classifier().num_mixes == 3


def test_trains_two_epochs_on_digits_and_resumes(tmp_path):
    result, _ = train_and_resume(tmp_path, "rankmixup")
    assert result["run"]["method"] == "RankMixup"
