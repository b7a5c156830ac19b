"""SAMix (arXiv:2111.15454): the Mixer's options, the L1 + variance mask loss, the eta-balanced
mixup loss, EMA encoder, gradient routing, the staged train step, config, digits + resume."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import (
    assert_ema_encoder_follows_momentum,
    assert_mix_block_gradient_routing,
    assert_same_training_state,
    train_step_both_ways,
)
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.engine import MethodScheduleHook
from mixbench.mixers.base import MixOutput
from mixbench.models import MixedCrossEntropy, PixelMixBlock
from mixbench.models.classifiers.automix import cosine_lr, cosine_momentum, rescale_lambda
from mixbench.models.classifiers.samix import EtaBalancedMixupLoss, SAMixClassifier
from mixbench.registry import MODELS

TINY = {"type": "ResNetCIFAR", "depth": 8, "width": 8, "in_channels": 1}


def tiny(**kw):
    torch.manual_seed(0)
    return SAMixClassifier(backbone=TINY, head={"type": "LinearHead", "num_classes": 5}, mask_stage=2, **kw)


def batch(b=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 16, 16, generator=g), torch.arange(b) % 5


def mix(y_a, y_b, lam):
    return MixOutput(
        inputs=torch.zeros(len(y_a), 1, 2, 2),
        y_a=torch.tensor(y_a),
        y_b=torch.tensor(y_b),
        lam=torch.tensor(lam),
        index=torch.arange(len(y_a)),
    )


def test_samix_defaults_build_the_published_mixer():
    clf = tiny()
    block = clf.mix_block
    assert (
        block.upsampling,
        block.lam_mul,
        block.lam_residual,
        block.lam_mul_k,
        block.x_qk_concat,
        block.mask_loss_mode,
        block.mask_loss_margin,
    ) == ("bilinear", 1.0, True, 0.25, True, "L1+Variance", 0.1)
    assert block.query.in_channels == block.key.in_channels == 32  # [f_a; f_b], 16 channels each
    assert [type(m).__name__ for m in block.value] == ["Conv2d", "BatchNorm2d", "ELU", "Conv2d"]
    assert block.value[0].out_channels == 8  # half of 16
    assert isinstance(clf.mix_block_loss, EtaBalancedMixupLoss) and clf.mix_block_loss.eta == 0.5
    override = tiny(mix_block={"upsampling": "nearest", "value_hidden": None})
    assert override.mix_block.upsampling == "nearest" and isinstance(
        override.mix_block.value, torch.nn.Conv2d
    )


def test_published_config():
    cfg = method_of("samix")
    clf = MODELS.build(model_of("samix", "resnet18_cifar", head={"num_classes": 100}))
    assert type(clf) is SAMixClassifier and cfg["name"] == "SAMix"
    assert (clf.alpha, clf.base_momentum, clf.mask_stage, clf.mask_loss_weight, clf.lam_margin) == (
        2.0,
        0.999,
        3,
        0.1,
        0.08,
    )
    block = clf.mix_block
    assert (
        block.in_channels,
        block.inter_channels,
        block.query.in_channels,
        block.value[0].out_channels,
    ) == (256, 128, 512, 128)
    assert clf.mix_block_loss.eta == 0.5
    assert (clf.end_momentum, clf.momentum_start, clf.mix_block_lr, clf.mix_block_min_lr) == (
        0.999999,
        0.1,
        0.1,
        0.05,
    )
    assert "hooks" not in cfg  # the schedules are the classifier's own


def test_rescale_lambda_curve():
    for lam in (0.0, 0.5, 1.0):
        assert rescale_lambda(lam, 0.25) == pytest.approx(lam)
    # (4/3 * 0.027 - 2 * 0.09 + 1.25 * 0.3) / (0.25 + 1/3) = 0.231 / 0.58333
    assert rescale_lambda(0.3, 0.25) == pytest.approx(0.396, abs=1e-9)
    assert rescale_lambda(0.7, 0.25) == pytest.approx(1 - 0.396, abs=1e-9)  # symmetric about 1/2
    with pytest.raises(ValueError, match="k >= 0"):
        rescale_lambda(0.3, -1)


def test_mixer_forward_is_the_formula():
    torch.manual_seed(0)
    block = PixelMixBlock(
        4,
        reduction=2,
        upsampling="bilinear",
        lam_mul=1.0,
        lam_residual=True,
        lam_mul_k=0.25,
        x_qk_concat=True,
        value_hidden=3,
        mask_loss_mode="L1+Variance",
    )
    for conv in (block.query, block.key, block.value[0], block.value[3]):
        torch.nn.init.normal_(conv.weight, std=1.0)
    block.eval()  # BN with its initial statistics
    feat, index, lam = torch.randn(3, 4, 2, 2), torch.tensor([2, 0, 1]), 0.3
    mask = block(feat, index, lam, (8, 8))
    assert mask.shape == (3, 1, 8, 8) and ((mask > 0) & (mask < 1)).all() and mask.std() > 0
    s = rescale_lambda(lam, 0.25)
    f_a, f_b = feat * (1 + s), feat[index] * (2 - s)
    pair = torch.cat([f_a, f_b], 1)
    q = block.query(pair).flatten(2).transpose(1, 2)
    k = block.key(pair).flatten(2)
    v = block.value(f_b).flatten(2).transpose(1, 2)
    m_b = ((q @ k / math.sqrt(2)).softmax(-1) @ v).view(3, 1, 2, 2)
    expected = 1 - torch.sigmoid(F.interpolate(m_b, size=(8, 8), mode="bilinear"))
    assert torch.allclose(mask, expected, atol=1e-6)
    assert not torch.allclose(mask, block(feat, index, 0.8, (8, 8)))  # lambda is encoded


def test_l1_plus_variance_mask_loss_on_a_hand_built_mask():
    block = PixelMixBlock(8, mask_loss_mode="L1+Variance", mask_loss_margin=0.1)
    mask = torch.empty(2, 1, 2, 2)
    mask[0], mask[1] = 0.9, 0.1  # mean 0.5, variance 0.16
    assert block.mask_loss(mask, 0.3).item() == pytest.approx(0.1 - 2 * 0.16)  # |0.5 - 0.3| - 0.1
    assert block.mask_loss(mask, 0.45).item() == pytest.approx(-2 * 0.16)  # inside the margin
    flat = torch.full((2, 1, 2, 2), 0.5)
    assert block.mask_loss(flat, 0.5).item() == 0.0
    assert PixelMixBlock(8).mask_loss(mask, 0.3).item() == pytest.approx(0.1)  # AutoMix's L1


def test_eta_balanced_loss_on_hand_built_logits():
    z = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))  # p = 0.1, 0.2, 0.3, 0.4
    out = mix([1], [2], [0.25])  # p_a = 0.2, p_b = 0.3
    local = -(0.25 * math.log(0.4) + 0.75 * math.log(0.6))  # p_a / (p_a + p_b) = 0.4
    glob = -math.log(0.5)
    for eta in (0.0, 0.5, 2.0):
        assert EtaBalancedMixupLoss(eta)(z, out).item() == pytest.approx(local + eta * glob, rel=1e-6)
    mixup_ce = -(0.25 * math.log(0.2) + 0.75 * math.log(0.3))
    assert EtaBalancedMixupLoss(1.0)(z, out).item() == pytest.approx(mixup_ce, rel=1e-6)
    # a pair of one class: plain CE, whatever eta
    assert EtaBalancedMixupLoss(0.5)(z, mix([3], [3], [0.6])).item() == pytest.approx(
        -math.log(0.4), rel=1e-6
    )


def test_eta_balanced_loss_equals_mixup_ce_at_one_and_splits_the_gradient():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 10, generator=g, requires_grad=True)
    out = mix(list(range(8)), [3, 0, 5, 3, 9, 5, 1, 2], torch.rand(8, generator=g).tolist())
    assert torch.allclose(EtaBalancedMixupLoss(1.0)(z, out), MixedCrossEntropy()(z, out), atol=1e-6)
    EtaBalancedMixupLoss(0.0)(z, out).backward()  # the local term alone
    others = torch.ones(8, 10, dtype=torch.bool)
    others[torch.arange(8), out.y_a] = False
    others[torch.arange(8), out.y_b] = False
    mixed = out.y_a != out.y_b
    assert z.grad[mixed][others[mixed]].abs().max() < 1e-8  # moves only z_a - z_b
    assert z.grad[mixed][~others[mixed]].abs().min() > 1e-4
    assert torch.allclose(z.grad[mixed].sum(1), torch.zeros(int(mixed.sum())), atol=1e-7)
    with pytest.raises(ValueError, match="soft_targets"):
        EtaBalancedMixupLoss()(
            z,
            MixOutput(
                out.inputs, out.y_a, out.y_b, out.lam, out.index, soft_targets=torch.full((8, 10), 0.1)
            ),
        )
    with pytest.raises(ValueError, match="eta"):
        EtaBalancedMixupLoss(-0.1)


def test_mix_block_gets_gradient_only_from_its_own_losses():
    clf = tiny()
    x, y = batch()
    torch.manual_seed(2)
    assert_mix_block_gradient_routing(clf, clf.loss(x, y))  # the key conv and value network included


def test_ema_encoder_gets_no_gradient_and_follows_the_scheduled_momentum():
    clf = tiny(end_momentum=0.999999, mix_block_lr=0.1, mix_block_min_lr=0.05)
    rest = [p for n, p in clf.named_parameters() if not n.startswith("mix_block") and p.requires_grad]
    opt = torch.optim.SGD([{"params": rest}, {"params": list(clf.mix_block.parameters())}], lr=0.5)
    runner = SimpleNamespace(model=clf, iter=70, max_iters=100, optim_wrapper=SimpleNamespace(optimizer=opt))
    hook = MethodScheduleHook()
    x, y = batch()

    def update():
        hook.before_train(runner)
        hook.before_train_iter(runner, 0)
        m = cosine_momentum(0.999, 0.999999, 70, 100)
        assert clf.momentum == pytest.approx(m)
        assert opt.param_groups[1]["lr"] == pytest.approx(cosine_lr(0.1, 0.05, 70, 100))
        hook.after_train_iter(runner, 0)
        return m

    assert_ema_encoder_follows_momentum(clf, lambda: clf.loss(x, y), update)


def test_staged_train_step_equals_one_backward():
    clf = tiny()
    x, y = batch(8)
    (g_staged, log_staged, w_staged, _), (g_one, log_one, w_one, _) = train_step_both_ways(
        clf, {"inputs": x, "data_samples": y}
    )
    assert (
        list(log_staged) == list(log_one) == ["loss", "loss_mix", "loss_mix_block", "loss_mask", "loss_one"]
    )
    assert all(torch.equal(log_staged[k], log_one[k]) for k in log_one)
    assert g_staged.keys() == g_one.keys() and any(k.startswith("mix_block.key") for k in g_one)
    for name in g_one:
        assert torch.allclose(g_staged[name], g_one[name], rtol=1e-5, atol=1e-7), name
    assert w_staged.inner_count == w_one.inner_count == 1


def test_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY},
        "method": {"classifier": {"mask_stage": 2, "mix_block": {"value_hidden": 8}}},
        "meta": {"backbone": "resnet8_w8"},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "samix", overrides)
    assert result["run"]["method"] == "SAMix"
    assert a["state_dict"].keys() == b["state_dict"].keys()
    # every tensor: weights, EMA encoder, Mixer (its value network's BN statistics too)
    assert_same_training_state(
        a,
        b,
        (
            "backbone.",
            "backbone_k.",
            "head.",
            "head_k.",
            "head_one.",
            "head_one_k.",
            "mix_block.",
            "mix_block.value.1.running_mean",
        ),
    )
    assert set(a["state_dict"]) == {
        k
        for k in a["state_dict"]
        if k.split(".")[0]
        in ("backbone", "backbone_k", "head", "head_k", "head_one", "head_one_k", "mix_block")
    }
