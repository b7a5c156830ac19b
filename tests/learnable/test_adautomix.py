"""AdAutoMix (ICLR 2024): generator masks over N images, label weights, lambda margin, the
adversarial sign of the generator's step, the loss formula, EMA encoder, schedule hook,
published config, digits training and exact resume."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import (
    assert_ema_encoder_follows_momentum,
    assert_mix_block_gradient_routing,
    assert_neck_is_part_of_the_ema_classifier,
    assert_same_training_state,
    train_step_both_ways,
)
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.engine import MethodScheduleHook
from mixbench.models.classifiers import adautomix as adautomix_module
from mixbench.models.classifiers.adautomix import AdaptiveMaskBlock, AdAutoMixClassifier
from mixbench.models.classifiers.automix import cosine_momentum
from mixbench.registry import MODELS

TINY = {"type": "ResNetCIFAR", "depth": 8, "width": 8, "in_channels": 1}


def tiny(varied=True, **kw):
    """A tiny AdAutoMix (mask from the 8x8 stage 2 of 16x16 inputs); ``varied``: generator
    weights ~ N(0, 1) instead of N(0, 0.01), so that masks differ visibly from uniform."""
    torch.manual_seed(0)
    clf = AdAutoMixClassifier(
        backbone=TINY, head={"type": "LinearHead", "num_classes": 5}, mask_stage=2, **kw
    )
    if varied:
        for conv in (clf.mix_block.query, clf.mix_block.key, clf.mix_block.value):
            torch.nn.init.normal_(conv.weight, std=1.0)
    return clf


def batch(b=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 16, 16, generator=g), torch.arange(b) % 5


def fixed_draws(monkeypatch, values):
    monkeypatch.setattr(
        adautomix_module, "beta_sample", lambda a, b, n: torch.tensor(values[:n], dtype=torch.float64)
    )


def reference_masks(block, feat, indices, size):
    """The generator written out image by image (the official co_attn loop)."""
    d = block.inter_channels
    q = [F.relu(block.query(feat[i])).flatten(2) for i in indices]  # (B, d, hw)
    k = [F.relu(block.key(feat[i])).flatten(2) for i in indices]
    v = [block.value(feat[i]).flatten(2) for i in indices]  # (B, 1, hw)
    logits = []
    for i in range(len(indices)):
        att = sum(q[i].transpose(1, 2) @ k[j] for j in range(len(indices)) if j != i) / math.sqrt(d)
        logits.append((att.softmax(-1) @ v[i].transpose(1, 2)).view(feat.shape[0], 1, *feat.shape[-2:]))
    return F.interpolate(torch.cat(logits, 1), size=size, mode=block.upsampling).softmax(1)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("upsampling", ["bilinear", "nearest"])
def test_masks_are_non_negative_sum_to_one_and_follow_the_formula(n, upsampling):
    torch.manual_seed(0)
    block = AdaptiveMaskBlock(16, upsampling=upsampling)
    for conv in (block.query, block.key, block.value):
        torch.nn.init.normal_(conv.weight, std=1.0)
    feat = torch.randn(4, 16, 4, 4)
    indices = [torch.arange(4), torch.tensor([1, 0, 3, 2]), torch.tensor([2, 3, 1, 0])][:n]
    masks = block(feat, indices, [1.0 / n] * n, (16, 16))
    assert masks.shape == (4, n, 16, 16) and masks.dtype == torch.float32
    assert (masks >= 0).all() and torch.allclose(masks.sum(1), torch.ones(4, 16, 16), atol=1e-6)
    assert masks.std() > 0.01
    assert torch.allclose(masks, reference_masks(block, feat, indices, (16, 16)), atol=1e-5)
    cells = masks.unfold(2, 4, 4).unfold(3, 4, 4)  # one 4x4 block per feature cell
    assert bool((cells == cells[..., :1, :1]).all()) == (upsampling == "nearest")
    # without lam_concat the generator does not see the lambdas; with it, it does
    assert torch.equal(masks, block(feat, indices, [0.9] + [0.1 / (n - 1)] * (n - 1), (16, 16)))
    torch.manual_seed(0)
    cat = AdaptiveMaskBlock(16, lam_concat=True)
    assert cat.query.in_channels == 17 and cat.value.in_channels == 17
    torch.nn.init.normal_(cat.value.weight, std=1.0)
    assert not torch.equal(
        cat(feat, indices, [0.8] + [0.2 / (n - 1)] * (n - 1), (16, 16)),
        cat(feat, indices, [0.1] + [0.9 / (n - 1)] * (n - 1), (16, 16)),
    )


def test_three_image_sample_labels_are_the_drawn_weights_or_the_mask_areas(monkeypatch):
    x, y = batch()
    fixed_draws(monkeypatch, [0.2, 0.6, 0.2])  # normalised: 0.2, 0.6, 0.2
    for correct_lam in (False, True):
        clf = tiny(correct_lam=correct_lam)
        torch.manual_seed(3)
        g = clf.generate_masks(x, adversarial=False)
        assert g["n"] == 3 and g["w_mb"] == pytest.approx([0.2, 0.6, 0.2]) and g["w_bb"] == g["w_mb"]
        assert torch.equal(g["index_mb"][0], torch.arange(6))
        mask = g["mask_mb"]
        assert mask.shape == (6, 3, 16, 16) and mask.requires_grad and not g["mask_bb"].requires_grad
        expected_x = sum(mask[:, i : i + 1] * x[idx] for i, idx in enumerate(g["index_mb"]))
        assert torch.allclose(g["x_mb"], expected_x, atol=1e-6)
        out = clf.mix_output(g["x_mb"], y, g["index_mb"], g["w_mb"], mask)
        areas = mask.detach().mean((2, 3))  # (B, 3) mean area of each image
        lam = areas if correct_lam else torch.tensor([[0.2, 0.6, 0.2]]).expand(6, 3)
        expected = sum(lam[:, i : i + 1] * F.one_hot(y[idx], 5) for i, idx in enumerate(g["index_mb"]))
        assert torch.allclose(out.soft_targets, expected, atol=1e-6)
        assert torch.allclose(out.soft_targets.sum(1), torch.ones(6), atol=1e-6)
        assert torch.allclose(out.lam, lam[:, 0]) and torch.equal(out.mask, mask[:, :1])
        assert torch.equal(out.y_b, y[out.index])
        if not correct_lam:  # the generator does not see the drawn weights: areas differ
            assert (areas - lam).abs().max() > 0.01


def test_two_images_use_pairwise_labels_and_the_lambda_margin(monkeypatch):
    clf = tiny(mix_num=2, correct_lam=True)
    x, y = batch()
    fixed_draws(monkeypatch, [0.4, 0.02])  # lam_mb 0.4, lam_bb 0.02 <= 0.03
    torch.manual_seed(0)
    g = clf.generate_masks(x, adversarial=False)
    assert g["w_mb"] == pytest.approx([0.4, 0.6]) and g["w_bb"] == pytest.approx([0.02, 0.98])
    idx = g["index_bb"][1]
    assert torch.allclose(g["mask_bb"][:, 0], torch.full((6, 16, 16), 0.02))
    assert torch.allclose(g["x_bb"], 0.02 * x + 0.98 * x[idx], atol=1e-6)
    out = clf.mix_output(g["x_mb"], y, g["index_mb"], g["w_mb"], g["mask_mb"])
    assert out.soft_targets is None and torch.equal(out.y_b, y[g["index_mb"][1]])
    # the pairwise MixOutput contract: inputs == mask * x + (1 - mask) * x[index], lam == area
    assert torch.allclose(out.inputs, out.mask * x + (1 - out.mask) * x[out.index], atol=1e-5)
    assert torch.allclose(out.lam, out.mask.detach().mean((1, 2, 3)), atol=1e-6)
    fixed_draws(monkeypatch, [0.4, 0.3])
    g = clf.generate_masks(x, adversarial=False)
    assert g["mask_bb"].std() > 0.01  # the generator's own mask
    # three images: margin on the smallest weight
    clf3 = tiny()
    fixed_draws(monkeypatch, [0.01, 0.5, 0.49])
    g = clf3.generate_masks(x, adversarial=False)
    expected = sum(w * x[i] for w, i in zip(g["w_bb"], g["index_bb"]))
    assert min(g["w_bb"]) <= 0.03 and torch.allclose(g["x_bb"], expected, atol=1e-6)


def ema_mixed_ce(clf, x, y, seed):
    """The EMA classifier's CE on the generator's mixed sample for the draws of ``seed``,
    computed by hand from the masks (independent of ``loss_mix_block``)."""
    torch.manual_seed(seed)
    g = clf.generate_masks(x, adversarial=False)
    with torch.no_grad():
        logits = clf.head_k(clf.neck(clf.backbone_k(g["x_mb"])))
        target = sum(w * F.one_hot(y[i], 5) for w, i in zip(g["w_mb"], g["index_mb"]))
        return -(target * logits.log_softmax(1)).sum(1).mean().item()


def generator_step(clf, x, y, seed, step, lr):
    """One SGD step of the generator alone on ``loss_mix_block`` at iteration ``step``;
    returns the EMA classifier's mixed CE before and after it."""
    before = ema_mixed_ce(clf, x, y, seed)
    opt = torch.optim.SGD(clf.mix_block.parameters(), lr=lr)
    clf.step = step
    torch.manual_seed(seed)
    clf.loss(x, y)["loss_mix_block"].backward()
    opt.step()
    return before, ema_mixed_ce(clf, x, y, seed)


def test_generator_ascends_the_mixed_loss_on_adversarial_steps_and_the_classifier_descends():
    x, y = batch(8)
    clf = tiny(beta=1.0)  # pure adversarial CE: loss_mix_block = -CE_k
    before, after = generator_step(clf, x, y, seed=4, step=0, lr=0.5)
    assert after > before + 1e-4
    clf = tiny(beta=1.0)  # odd step: cooperative, as AutoMix's Mix Block
    before, after = generator_step(clf, x, y, seed=4, step=1, lr=0.5)
    assert after < before - 1e-4
    # the classifier's step, on the same fixed batch and draws, decreases its mixed loss
    clf = tiny(beta=1.0)
    params = [*clf.backbone.parameters(), *clf.head.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    values = []
    for _ in range(2):
        clf.step = 0
        torch.manual_seed(4)
        losses = clf.loss(x, y)
        values.append(losses["loss_mix"].item())
        opt.zero_grad()
        losses["loss_mix"].backward()
        opt.step()
    assert values[1] < values[0] - 1e-4


def test_gradients_are_routed_to_their_own_players():
    clf = tiny()
    x, y = batch()
    torch.manual_seed(2)
    assert_mix_block_gradient_routing(
        clf,
        clf.loss(x, y),
        classifier_losses=("loss_mix", "loss_one", "loss_plain_mix"),
        mix_block_losses=("loss_mix_block",),
    )


def test_adversarial_loss_is_minus_beta_ce_plus_weighted_cosine(monkeypatch):
    clf = tiny(beta=0.3)
    x, y = batch()
    fixed_draws(monkeypatch, [0.5, 0.3, 0.2])
    torch.manual_seed(7)
    g = clf.generate_masks(x, adversarial=True)
    with torch.no_grad():
        k = lambda inp: clf.head_k(clf.neck(clf.backbone_k(inp)))  # noqa: E731
        logits_mb = k(g["x_mb"])
        target = sum(w * F.one_hot(y[i], 5) for w, i in zip(g["w_mb"], g["index_mb"]))
        ce = -(target * logits_mb.log_softmax(1)).sum(1).mean()
        # the official code: one EMA pass per image on the permuted batch
        cos = sum(
            w * F.cosine_similarity(logits_mb, k(x[i]), dim=-1) for w, i in zip(g["w_mb"], g["index_mb"])
        ).mean()
        assert torch.allclose(g["clean_logits_k"][g["index_mb"][1]], k(x[g["index_mb"][1]]), atol=1e-5)
    clf.step = 0
    torch.manual_seed(7)
    losses = clf.loss(x, y)
    assert losses["loss_mix_block"].item() == pytest.approx((-0.3 * ce + 0.7 * cos).item(), abs=1e-5)
    torch.manual_seed(7)
    losses = clf.loss(x, y)  # step 1: cooperative
    assert losses["loss_mix_block"].item() == pytest.approx(ce.item(), abs=1e-5)
    # the classifier's clean term: (1 - r) CE(clean) and r CE(plain 3-image mixup)
    one = F.cross_entropy(clf.head_one(clf.neck(clf.backbone(x))), y)
    assert losses["loss_one"].item() == pytest.approx(0.5 * one.item(), abs=1e-5)


def test_ema_encoder_gets_no_gradient_and_the_hook_schedules_it():
    clf = tiny()
    x, y = batch()
    hook = MethodScheduleHook()
    runner = SimpleNamespace(
        model=clf,
        iter=63,
        max_iters=100,
        optim_wrapper=SimpleNamespace(optimizer=torch.optim.SGD(clf.parameters(), lr=0.1)),
    )

    def update():
        hook.before_train(runner)
        hook.before_train_iter(runner, 0)
        m = cosine_momentum(0.999, 0.999999, 63, 100, 0.1)
        assert clf.momentum == pytest.approx(m) and clf.step == 63
        hook.after_train_iter(runner, 0)
        return m

    assert_ema_encoder_follows_momentum(clf, lambda: clf.loss(x, y), update)


def test_random_number_of_images():
    clf = tiny(random_num=True, mix_num=3)
    x, _ = batch()
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        g = clf.generate_masks(x, adversarial=False)
        seen.add(g["n"])
        assert g["mask_mb"].shape[1] == g["n"] == len(g["index_mb"])
    assert seen == {2, 3}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_computes_what_the_cpu_step_computes():
    clf = tiny()
    x, y = batch()
    torch.manual_seed(5)
    on_cpu = clf.loss(x, y)
    clf.cuda()
    clf.step = 0
    torch.manual_seed(5)  # draws come from the CPU generator: the same ones
    on_gpu = clf.loss(x.cuda(), y.cuda())
    assert on_cpu.keys() == on_gpu.keys()
    for key in on_cpu:
        assert on_gpu[key].item() == pytest.approx(on_cpu[key].item(), abs=1e-4), key


def test_errors_are_explained():
    head = {"type": "LinearHead", "num_classes": 5}
    for kw, match in (
        ({"mix_num": 1}, "mix_num"),
        ({"beta": 1.5}, "beta"),
        ({"mixup_ratio": -0.1}, "mixup_ratio"),
        ({"adv_interval": 0}, "adv_interval"),
        ({"alpha": 0.0}, "alpha"),
    ):
        with pytest.raises(ValueError, match=match):
            AdAutoMixClassifier(backbone=TINY, head=head, mask_stage=2, **kw)
    with pytest.raises(ValueError, match="upsampling"):
        AdaptiveMaskBlock(8, upsampling="area")
    with pytest.raises(ValueError, match=r"needs a \(B, 8, h, w\) feature map .* got shape \(2, 4, 4, 4\)"):
        AdaptiveMaskBlock(8)(
            torch.randn(2, 4, 4, 4), [torch.arange(2), torch.tensor([1, 0])], [0.5, 0.5], (16, 16)
        )
    with pytest.raises(ValueError, match="at least 2"):
        tiny().loss(torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long))


def test_config_is_the_published_cifar100_resnet18_setting():
    cfg = method_of("adautomix")
    clf = MODELS.build(model_of("adautomix", "resnet18_cifar", head={"num_classes": 100}))
    assert isinstance(clf, AdAutoMixClassifier)
    assert (
        clf.alpha,
        clf.mix_num,
        clf.random_num,
        clf.base_momentum,
        clf.mask_stage,
        clf.lam_margin,
        clf.beta,
        clf.mixup_ratio,
        clf.adv_interval,
        clf.correct_lam,
    ) == (1.0, 3, False, 0.999, 3, 0.03, 0.3, 0.5, 2, False)
    block = clf.mix_block
    assert isinstance(block, AdaptiveMaskBlock)
    assert (block.in_channels, block.inter_channels, block.upsampling, block.lam_concat, block.use_scale) == (
        256,
        128,
        "bilinear",
        False,
        True,
    )
    assert (clf.end_momentum, clf.momentum_start, clf.mix_block_lr, clf.mix_block_weight) == (
        0.999999,
        0.1,
        None,
        1.0,
    )
    assert "hooks" not in cfg  # the schedules are the classifier's own
    assert cfg["name"] == "AdAutoMix"


def test_staged_train_step_computes_the_single_backward_gradients():
    clf = tiny()
    g = torch.Generator().manual_seed(2)
    data = {
        "inputs": torch.randint(0, 256, (6, 1, 16, 16), generator=g, dtype=torch.uint8),
        "data_samples": torch.arange(6) % 5,
    }
    (g_staged, log_staged, _, _), (g_one, log_one, _, one) = train_step_both_ways(clf, data)
    assert (
        list(log_staged)
        == list(log_one)
        == ["loss", "loss_mix_block", "loss_one", "loss_plain_mix", "loss_mix"]
    )
    assert all(torch.allclose(log_staged[k], log_one[k]) for k in log_one)
    assert g_staged.keys() == g_one.keys()
    assert {k.split(".")[0] for k in g_one} == {"backbone", "head", "head_one", "mix_block"}
    for name in g_one:
        assert torch.allclose(g_staged[name], g_one[name], rtol=1e-5, atol=1e-7), name
    state = one.state_dict()
    for name, value in clf.state_dict().items():
        assert torch.allclose(value.float(), state[name].float(), rtol=1e-5, atol=1e-6), name


def test_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    # adv_interval 3 with 2 iterations per epoch: the resumed run's first step (iteration 2)
    # is cooperative only if the hook restores the step from the iteration
    overrides = {
        "model": {"backbone": TINY},
        "method": {"classifier": {"mask_stage": 2, "adv_interval": 3}},
        "meta": {"backbone": "resnet8_w8"},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "adautomix", overrides)
    assert result["run"]["method"] == "AdAutoMix"
    assert_same_training_state(
        a, b, ("backbone_k.", "head_k.", "mix_block.", "backbone.", "head.", "head_one.")
    )
    # the EMA encoder moved towards the online one but is not a copy of it
    sd = a["state_dict"]
    assert any(
        not torch.equal(sd[k], sd["backbone." + k[len("backbone_k.") :]])
        for k in sd
        if k.startswith("backbone_k.") and "running" not in k and sd[k].is_floating_point()
    )


def test_a_neck_with_parameters_is_part_of_the_ema_classifier():
    """The Mix Block's loss runs the EMA encoder, neck and head: a neck with parameters
    gets an EMA copy, which the Mix Block's gradient does not reach."""
    assert_neck_is_part_of_the_ema_classifier(
        tiny,
        *batch(),
        classifier_losses=("loss_mix", "loss_one", "loss_plain_mix"),
        mix_block_losses=("loss_mix_block",),
    )


def test_mix_block_weight_scales_the_generators_loss_and_mask_loss_is_refused():
    """mix_block_weight is the official head_mix_k weight of the generator's loss, on
    adversarial and cooperative steps; AdAutoMix has no mask loss, and says so."""
    x, y = batch()
    for step in (0, 1):  # adversarial, cooperative
        values = []
        for weight in (1.0, 2.5):
            clf = tiny(mix_block_weight=weight)
            clf.step = step
            torch.manual_seed(7)
            values.append(clf.loss(x, y)["loss_mix_block"].item())
        assert values[1] == pytest.approx(2.5 * values[0], rel=1e-5)
    with pytest.raises(ValueError, match="AdAutoMixClassifier has no option 'mask_loss': .* no mask loss"):
        tiny(mask_loss=0.1)
    with pytest.raises(ValueError, match="has no option 'mix_blok_weight'; did you mean 'mix_block_weight'"):
        tiny(mix_blok_weight=2.0)
