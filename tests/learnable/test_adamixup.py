"""AdaMixUpClassifier (AdaMixUp, Guo, Mao & Zhang, AAAI 2019): the samples of a step (shapes,
labels, lambda inside its generated interval and uniform there, degenerate intervals), both
losses worked by hand on a hand-built model, which network each loss trains, the official
two forward passes and the one-pass option, errors, the method file, reproducibility,
CPU/CUDA, digits training and exact resume."""

import math

import pytest
import torch
from mbtest.mixers import seeded
from mbtest.repo import method_of, model_of
from mbtest.training import train_and_resume
from scipy import stats
from torch import nn

from mixbench.models.classifiers import AdaMixUpClassifier
from mixbench.models.classifiers.adamixup import truncated_normal
from mixbench.registry import MODELS

RESNET = {"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}


def classifier(**kw):
    torch.manual_seed(0)
    return AdaMixUpClassifier(backbone=RESNET, head={"type": "LinearHead", "num_classes": 3}, **kw)


def batch(b: int, seed: int = 0):
    return torch.randn(b, 1, 8, 8, generator=seeded(seed)), torch.arange(b) % 3


def test_samples_of_a_step_odd_batch():
    clf = classifier()
    x, y = batch(5)
    clf.generator = seeded(1)
    mix = clf.mix(x, y)
    n = 3  # ceil(5 / 2) pairs mixed, 2 held out
    assert mix.target.inputs.shape == (2 * n, 1, 8, 8) and mix.images.shape == (5 + n, 1, 8, 8)
    assert mix.alpha.shape == mix.delta.shape == (n,)
    index, lam = mix.target.index[:n], mix.target.lam[:n]
    w = lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(mix.images[:n], w * x[:n] + (1 - w) * x[index])
    assert torch.equal(mix.images[n : 2 * n], x[:n]) and torch.equal(mix.images[2 * n :], x[n:])
    assert torch.equal(mix.target.inputs, mix.images[: 2 * n])
    assert torch.equal(mix.target.y_a, torch.cat([y[:n], y[:n]]))
    assert torch.equal(mix.target.y_b, torch.cat([y[index], y[:n]]))
    assert torch.equal(mix.target.lam[n:], torch.ones(n))
    torch.testing.assert_close(mix.target.target(3).sum(1), torch.ones(2 * n))
    # the official N(0, 1e-3) heads start every region near (1/3, 2/3)
    torch.testing.assert_close(mix.alpha, torch.full((n,), 1 / 3), atol=0.01, rtol=0)
    torch.testing.assert_close(mix.delta, torch.full((n,), 1 / 3), atol=0.01, rtol=0)


def test_lambda_is_uniform_inside_each_pairs_own_interval():
    clf = classifier(init_std=0.5)  # regions that differ from pair to pair
    x, y = batch(400, seed=3)
    clf.generator = seeded(2)
    with torch.no_grad():
        mix = clf.mix(x, y)
    lam, alpha, delta = mix.target.lam[:200], mix.alpha, mix.delta
    assert float(alpha.std()) > 0.01 and float(delta.std()) > 0.01
    assert bool((alpha >= 0).all() and (delta >= 0).all() and (alpha + delta <= 1 + 1e-6).all())
    assert bool((lam >= alpha).all() and (lam <= alpha + delta).all())
    assert stats.kstest(((lam - alpha) / delta).numpy(), "uniform").pvalue > 1e-3


def test_prg_noise_is_a_standard_normal_truncated_at_two():
    m = truncated_normal((200000,), seeded(0))
    assert float(m.min()) >= -2 and float(m.max()) <= 2
    truncated = stats.truncnorm(-2, 2)
    assert float(m.std()) == pytest.approx(truncated.std(), abs=0.005)  # 0.880, not 1
    assert float(m.mean()) == pytest.approx(0.0, abs=0.005)


@pytest.mark.parametrize(
    "bias, region",
    [
        ((0.0, -200.0, 0.0), (0.5, 0.0)),  # delta underflows to 0: lam = alpha exactly
        ((0.0, -200.0, -200.0), (1.0, 0.0)),  # lam = 1: the first image itself
        ((-200.0, -200.0, 0.0), (0.0, 0.0)),  # lam = 0: the partner itself
        ((-200.0, 0.0, -200.0), (0.0, 1.0)),  # the whole [0, 1]
    ],
)
def test_degenerate_intervals(bias, region):
    clf = classifier()
    with torch.no_grad():
        clf.policy_head[-1].weight.zero_()
        clf.policy_head[-1].bias.copy_(torch.tensor(bias))
    x, y = batch(6)
    clf.generator = seeded(4)
    mix = clf.mix(x, y)
    assert mix.alpha.tolist() == [region[0]] * 3 and mix.delta.tolist() == [region[1]] * 3
    lam, index = mix.target.lam[:3], mix.target.index[:3]
    if region[1] == 0:
        assert lam.tolist() == [region[0]] * 3
    assert bool((lam >= 0).all() and (lam <= 1).all())
    if region == (1.0, 0.0):
        assert torch.equal(mix.images[:3], x[:3])
    if region == (0.0, 0.0):
        assert torch.equal(mix.images[:3], x[index])
    torch.testing.assert_close(mix.target.target(3).sum(1), torch.ones(6))
    clf.generator = seeded(4)
    losses = clf.loss(x, y)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(p.grad).all() for p in clf.parameters() if p.grad is not None)


class Flat(nn.Module):
    """A 'network' that hands its (B, 1, 1, 3) input on as (B, 3) features."""

    def forward(self, x, stage_hook=None):
        return x.flatten(1)


def linear(weight, bias):
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def ce(z, c):
    return math.log(sum(math.exp(v) for v in z)) - z[c]


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("one_forward", [False, True])
def test_losses_hand_computed_on_a_hand_built_model(one_forward):
    # every network is the identity on 3 pixels, but the PRG's and the discriminator's heads
    wp, bp = [[0.5, -1.0, 0.2], [0.3, 0.8, -0.4], [-0.6, 0.1, 0.9]], [0.1, -0.2, 0.3]
    wd, bd = [[1.0, -0.5, 0.25], [-0.3, 0.7, 0.4]], [0.2, -0.1]
    clf = classifier(one_forward=one_forward)
    clf.backbone, clf.policy_backbone = Flat(), Flat()
    clf.neck, clf.policy_neck, clf.head = nn.Identity(), nn.Identity(), nn.Identity()
    clf.policy_head, clf.intrusion_head = linear(wp, bp), linear(wd, bd)
    xs = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [-1.0, 1.0, 1.5], [0.0, -0.5, 0.5]]
    ys = [0, 2, 1, 0]
    # the draws, in the class's order from the same generator: pairing, u, the PRG's noise
    g = seeded(7)
    perm = torch.randperm(4, generator=g).tolist()
    u = torch.rand(2, generator=g).tolist()
    noise = truncated_normal((2, 2, 1, 1, 3), g).view(2, 2, 3).tolist()
    cls_terms, mixed = [], []
    for k in range(2):
        xi, xj, yi, yj = xs[k], xs[perm[k]], ys[k], ys[perm[k]]
        gate = [(noise[0][k][p] * xi[p] + noise[1][k][p] * xj[p]) / 2 for p in range(3)]
        a, d, _ = softmax([sum(w * v for w, v in zip(row, gate)) + b for row, b in zip(wp, bp)])
        lam = a + u[k] * d
        z = [lam * p + (1 - lam) * q for p, q in zip(xi, xj)]
        mixed.append(z)
        cls_terms += [lam * ce(z, yi) + (1 - lam) * ce(z, yj), ce(xi, yi)]
    disc = [(z, 0) for z in mixed] + [(x, 1) for x in xs]
    intrusion = sum(
        ce([sum(w * v for w, v in zip(row, z)) + b for row, b in zip(wd, bd)], c) for z, c in disc
    )
    clf.generator = seeded(7)
    losses = clf.loss(torch.tensor(xs).view(4, 1, 1, 3), torch.tensor(ys))
    assert set(losses) == {"loss", "intrusion_loss"}
    assert losses["loss"].item() == pytest.approx(sum(cls_terms) / 4, rel=1e-5)
    assert losses["intrusion_loss"].item() == pytest.approx(intrusion / 6, rel=1e-5)


def test_official_two_passes_or_one_and_which_network_each_loss_trains():
    x, y = batch(8)
    for one_forward, passes in ((False, [8, 12]), (True, [12])):
        clf = classifier(one_forward=one_forward)
        seen, prg_seen = [], []
        clf.backbone.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].shape[0]))
        clf.policy_backbone.register_forward_hook(
            lambda m, args, out, seen=prg_seen: seen.append(args[0].shape[0])
        )
        losses = clf.loss(x, y)
        assert seen == passes and prg_seen == [4]
        parts = {
            "prg": [*clf.policy_backbone.parameters(), *clf.policy_head.parameters()],
            "trunk": list(clf.backbone.parameters()),
            "head": list(clf.head.parameters()),
            "discriminator": list(clf.intrusion_head.parameters()),
        }
        # no gradient is stopped: both losses train the PRG (through the mixed images) and the trunk
        for key, reached in (
            ("loss", {"prg", "trunk", "head"}),
            ("intrusion_loss", {"prg", "trunk", "discriminator"}),
        ):
            clf.zero_grad(set_to_none=True)
            losses[key].backward(retain_graph=True)
            for part, params in parts.items():
                got = all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
                none = all(p.grad is None for p in params)
                assert got if part in reached else none, (one_forward, key, part)


def test_one_pass_differs_from_two_only_through_batchnorm():
    x, y = batch(8, seed=5)
    losses = []
    for one_forward in (False, True):
        clf = classifier(one_forward=one_forward).eval()  # running statistics: no batch dependence
        clf.generator = seeded(3)
        losses.append({k: v.item() for k, v in clf.loss(x, y).items()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_reproducible_from_a_seed():
    x, y = batch(6)
    runs = []
    for seed in (5, 5, 6):
        clf = classifier()
        clf.generator = seeded(seed)
        mix = clf.mix(x, y)
        clf.generator = seeded(seed)
        runs.append((mix.images.detach(), {k: v.item() for k, v in clf.loss(x, y).items()}))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not torch.equal(runs[0][0], runs[2][0])


def test_errors_name_the_problem():
    with pytest.raises(
        ValueError, match="AdaMixUp makes its own mixed samples; method.mixer must be Vanilla"
    ):
        classifier(mixer={"type": "Mixup", "alpha": 1.0})
    with pytest.raises(ValueError, match="policy_hidden must be an integer >= 1"):
        classifier(policy_hidden=0)
    with pytest.raises(ValueError, match="init_std must be a finite number >= 0"):
        classifier(init_std=-1.0)
    with pytest.raises(ValueError, match="one_forward must be true or false"):
        classifier(one_forward="yes")


def test_method_file_builds_the_published_setting():
    method = method_of("adamixup")
    assert method["name"] == "AdaMixUp" and set(method) == {"name", "classifier"}
    clf = MODELS.build(model_of("adamixup", head={"num_classes": 10}))
    assert isinstance(clf, AdaMixUpClassifier) and type(clf.mixer).__name__ == "Vanilla"
    assert [m.out_features for m in clf.policy_head] == [100, 3]
    assert [m.out_features for m in clf.intrusion_head] == [10, 2] and not clf.one_forward
    for layer in (*clf.policy_head, *clf.intrusion_head):
        assert float(layer.weight.detach().std()) == pytest.approx(1e-3, rel=0.2) and not layer.bias.any()
    # the PRG's trunk: the backbone's architecture with weights of its own
    assert type(clf.policy_backbone) is type(clf.backbone)
    shapes = [p.shape for p in clf.backbone.parameters()]
    assert [p.shape for p in clf.policy_backbone.parameters()] == shapes
    assert not all(
        torch.equal(p, q) for p, q in zip(clf.backbone.parameters(), clf.policy_backbone.parameters())
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_and_runs_under_autocast():
    x, y = batch(6)
    losses = []
    for device in ("cpu", "cuda"):
        clf = classifier().to(device).eval()
        clf.generator = seeded(1)
        losses.append({k: v.item() for k, v in clf.loss(x.to(device), y.to(device)).items()})
    for k in losses[0]:
        assert losses[1][k] == pytest.approx(losses[0][k], rel=1e-4, abs=1e-5), k
    with torch.autocast("cuda", dtype=torch.float16):
        out = clf.train().loss(x.cuda(), y.cuda())
    assert all(torch.isfinite(v) for v in out.values())


def test_trains_two_epochs_on_digits_and_resumes(tmp_path):
    result, checkpoint = train_and_resume(tmp_path, "adamixup")
    assert result["run"]["method"] == "AdaMixUp"
    assert any(k.startswith("policy_backbone.") for k in checkpoint["state_dict"])
    assert any(k.startswith("intrusion_head.") for k in checkpoint["state_dict"])
