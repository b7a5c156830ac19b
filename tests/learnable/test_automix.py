"""AutoMix (ECCV 2022): Mix Block, mask loss, lambda margin, EMA encoder, gradient routing,
schedules, digits training and exact resume."""

from types import SimpleNamespace

import pytest
import torch
from mbtest.learnable import (
    assert_ema_encoder_follows_momentum,
    assert_mix_block_gradient_routing,
    assert_neck_is_part_of_the_ema_classifier,
    assert_same_training_state,
    train_step_both_ways,
)
from mbtest.training import train_then_resume

from mixbench.engine import MethodScheduleHook
from mixbench.engine.staged import train_step_in_stages
from mixbench.models import AutoMixClassifier, PixelMixBlock
from mixbench.models.classifiers import automix as automix_module
from mixbench.models.classifiers.automix import cosine_lr, cosine_momentum

TINY = {"type": "ResNetCIFAR", "depth": 8, "width": 8, "in_channels": 1}


def tiny(**kw):
    torch.manual_seed(0)
    return AutoMixClassifier(backbone=TINY, head={"type": "LinearHead", "num_classes": 5}, mask_stage=2, **kw)


def batch(b=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 16, 16, generator=g), torch.arange(b) % 5


@pytest.mark.parametrize("upsampling", ["nearest", "bilinear"])
def test_mix_block_mask_shape_range_and_upsampling(upsampling):
    torch.manual_seed(0)
    block = PixelMixBlock(16, upsampling=upsampling)
    for conv in (block.query, block.value):  # larger weights than the 0.01 init: a varied mask
        torch.nn.init.normal_(conv.weight, std=1.0)
    feat = torch.randn(4, 16, 4, 4)
    mask = block(feat, torch.tensor([1, 0, 3, 2]), 0.3, (16, 16))
    assert mask.shape == (4, 1, 16, 16) and mask.dtype == torch.float32
    assert ((mask > 0) & (mask < 1)).all() and mask.std() > 0
    blocks = mask.unfold(2, 4, 4).unfold(3, 4, 4)  # (4, 1, 4, 4, 4, 4): one 4x4 block per cell
    constant = (blocks == blocks[..., :1, :1]).all()
    assert bool(constant) == (upsampling == "nearest")
    # the lambda channel only matters with lam_concat
    assert torch.equal(mask, block(feat, torch.tensor([1, 0, 3, 2]), 0.9, (16, 16)))
    torch.manual_seed(0)
    cat = PixelMixBlock(16, lam_concat=True)
    assert cat.query.in_channels == 17
    assert not torch.equal(
        cat(feat, torch.arange(4), 0.1, (16, 16)), cat(feat, torch.arange(4), 0.9, (16, 16))
    )


def test_mask_loss_is_l1_with_margin_on_the_batch_mean():
    block = PixelMixBlock(8, mask_loss_margin=0.1)
    mask = torch.full((2, 1, 4, 4), 0.7)
    assert block.mask_loss(mask, 0.5).item() == pytest.approx(0.1)
    assert block.mask_loss(mask, 0.75).item() == 0.0  # inside the margin
    mask[1] = 0.1  # batch mean 0.4
    assert block.mask_loss(mask, 0.8).item() == pytest.approx(0.3)


def test_lambda_margin_falls_back_to_mixup(monkeypatch):
    clf = tiny(lam_margin=0.08)
    x, _ = batch()
    monkeypatch.setattr(
        automix_module, "beta_sample", lambda a, b, n: torch.tensor([0.4, 0.05], dtype=torch.float64)
    )
    torch.manual_seed(0)
    (x_mb, mask_mb, _, lam_mb), (x_bb, mask_bb, index_bb, lam_bb), mask_loss = clf.generate_masks(x)
    assert (lam_mb, lam_bb) == (0.4, 0.05)
    assert torch.equal(mask_bb, torch.full_like(mask_bb, 0.05)) and not mask_bb.requires_grad
    assert torch.allclose(x_bb, 0.05 * x + 0.95 * x[index_bb], atol=1e-6)
    assert mask_mb.requires_grad
    expected = 0.1 * (mask_mb.mean() - 0.4).abs().sub(0.1).clamp_min(0)
    assert torch.allclose(mask_loss, expected)
    monkeypatch.setattr(
        automix_module, "beta_sample", lambda a, b, n: torch.tensor([0.4, 0.3], dtype=torch.float64)
    )
    _, (_, mask_bb, _, _), _ = clf.generate_masks(x)
    assert mask_bb.std() > 0 and not mask_bb.requires_grad  # the Mix Block's own mask, detached


def test_ema_encoder_gets_no_gradient_and_updates_by_the_momentum():
    clf = tiny()
    x, y = batch()

    def update():
        clf.momentum = 0.9
        clf.momentum_update()
        return 0.9

    assert_ema_encoder_follows_momentum(clf, lambda: clf.loss(x, y), update, atol=1e-6)


def test_ema_encoder_equals_the_online_one_after_init_weights():
    """mmengine re-initialises the model (init_cfg) after __init__ copied the EMA encoder:
    the copy must follow, or the two start apart."""
    clf = tiny(init_cfg={"type": "Normal", "layer": ["Conv2d", "Linear"], "std": 0.5})
    clf.init_weights()
    online = {**clf.backbone.state_dict(), **{f"head.{k}": v for k, v in clf.head.state_dict().items()}}
    ema = {**clf.backbone_k.state_dict(), **{f"head.{k}": v for k, v in clf.head_k.state_dict().items()}}
    assert online.keys() == ema.keys()
    assert all(torch.equal(online[k], ema[k]) for k in online)
    assert clf.backbone.stem[0].weight.std() > 0.3  # the init_cfg did run
    assert not any(p.requires_grad for p in [*clf.backbone_k.parameters(), *clf.head_k.parameters()])


def test_mix_block_gradient_comes_only_from_its_own_losses():
    clf = tiny()
    x, y = batch()
    torch.manual_seed(2)
    assert_mix_block_gradient_routing(clf, clf.loss(x, y))


def test_without_the_clean_sample_loss_there_is_no_head_one():
    clf = tiny(one_hot_weight=0.0)
    assert clf.head_one is None
    x, y = batch()
    assert set(clf.loss(x, y)) == {"loss_mix", "loss_mix_block", "loss_mask"}


def test_schedules():
    assert cosine_momentum(0.999, 0.999999, 5, 100) == 0.999  # first 10%: constant
    assert cosine_momentum(0.999, 0.999999, 100, 100) == pytest.approx(0.999999)
    assert cosine_momentum(0.999, 0.999999, 50, 100) == pytest.approx((0.999 + 0.999999) / 2)
    assert cosine_lr(0.1, 0.05, 0, 10) == pytest.approx(0.1) and cosine_lr(
        0.1, 0.05, 10, 10
    ) == pytest.approx(0.05)
    assert cosine_lr(0.1, 0.05, 5, 10) == pytest.approx(0.075)


def fake_runner(clf, optimizer, it, max_iters):
    return SimpleNamespace(
        model=clf, iter=it, max_iters=max_iters, optim_wrapper=SimpleNamespace(optimizer=optimizer)
    )


def test_hook_sets_momentum_and_mix_block_lr_then_updates_the_ema():
    clf = tiny(end_momentum=0.999999, mix_block_lr=0.1, mix_block_min_lr=0.05)
    mb = list(clf.mix_block.parameters())
    rest = [p for n, p in clf.named_parameters() if not n.startswith("mix_block") and p.requires_grad]
    opt = torch.optim.SGD([{"params": rest}, {"params": mb}], lr=0.1)
    hook = MethodScheduleHook()
    runner = fake_runner(clf, opt, 50, 100)
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    assert clf.momentum == pytest.approx(cosine_momentum(0.999, 0.999999, 50, 100))
    assert opt.param_groups[1]["lr"] == pytest.approx(0.075) and opt.param_groups[0]["lr"] == 0.1
    with torch.no_grad():
        clf.head.fc.weight.add_(1.0)
    k0 = clf.head_k.fc.weight.clone()
    hook.after_train_iter(runner, 0)
    m = clf.momentum
    assert torch.allclose(clf.head_k.fc.weight, m * k0 + (1 - m) * clf.head.fc.weight, atol=1e-7)
    shared = torch.optim.SGD(clf.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="paramwise_cfg"):
        hook.before_train(fake_runner(clf, shared, 0, 100))


def test_errors_are_explained():
    with pytest.raises(ValueError, match="mask_stage"):
        AutoMixClassifier(backbone=TINY, head={"type": "LinearHead", "num_classes": 5}, mask_stage=4)
    with pytest.raises(ValueError, match="upsampling"):
        PixelMixBlock(8, upsampling="area")
    with pytest.raises(ValueError, match=r"needs a \(B, 8, h, w\) feature map .* got shape \(2, 16, 8\)"):
        PixelMixBlock(8)(torch.randn(2, 16, 8), torch.tensor([1, 0]), 0.5, (16, 16))  # ViT tokens
    with pytest.raises(ValueError, match="at least 2"):
        tiny().loss(torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long))


def uint8_batch(b=8):
    g = torch.Generator().manual_seed(1)
    return {
        "inputs": torch.randint(0, 256, (b, 1, 16, 16), generator=g, dtype=torch.uint8),
        "data_samples": torch.arange(b) % 5,
    }


def test_staged_train_step_computes_the_single_backward_gradients():
    clf = tiny()
    (g_staged, log_staged, w_staged, _), (g_one, log_one, w_one, one) = train_step_both_ways(
        clf, uint8_batch()
    )
    assert (
        list(log_staged) == list(log_one) == ["loss", "loss_mix", "loss_mix_block", "loss_mask", "loss_one"]
    )
    assert all(torch.equal(log_staged[k], log_one[k]) for k in log_one)  # same forward values
    assert g_staged.keys() == g_one.keys()
    assert {k.split(".")[0] for k in g_one} == {"backbone", "head", "head_one", "mix_block"}
    for name in g_one:
        assert torch.allclose(g_staged[name], g_one[name], rtol=1e-5, atol=1e-7), name
    assert w_staged.inner_count == w_one.inner_count == 1
    # same update, same batch-norm statistics
    state = one.state_dict()
    for name, value in clf.state_dict().items():
        assert torch.allclose(value.float(), state[name].float(), rtol=1e-5, atol=1e-6), name


def test_staged_train_step_under_bf16_autocast():
    from mixbench.engine.optim import AutocastOptimWrapper

    clf = tiny()
    make = lambda params: AutocastOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1))  # noqa: E731
    (g_staged, log_staged, _, _), (g_one, log_one, _, _) = train_step_both_ways(
        clf, uint8_batch(), make_wrapper=make
    )
    assert all(torch.equal(log_staged[k], log_one[k]) and torch.isfinite(log_one[k]) for k in log_one)
    # bf16 rounding: one backward sums the two classifier passes' weight gradients in bf16 at
    # autocast's cached weight cast; the staged step sums them in float32
    for name in g_one:
        assert torch.allclose(g_staged[name], g_one[name], rtol=2e-2, atol=1e-4), name


def test_staged_train_step_keeps_gradient_accumulation():
    from mmengine.optim import OptimWrapper

    clf = tiny()
    wrapper = OptimWrapper(
        torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=0.1), accumulative_counts=2
    )
    wrapper.initialize_count_status(clf, 0, 4)
    before = clf.head.fc.weight.clone()
    train_step_in_stages(clf, uint8_batch(), wrapper)
    assert wrapper.inner_count == 1 and torch.equal(clf.head.fc.weight, before)  # accumulated only
    assert clf.head.fc.weight.grad is not None
    train_step_in_stages(clf, uint8_batch(), wrapper)
    assert wrapper.inner_count == 2 and not torch.equal(clf.head.fc.weight, before)
    assert clf.head.fc.weight.grad is None  # stepped, zeroed


def test_a_subclass_cannot_override_loss_instead_of_loss_stages():
    """loss() is all the stages in one dict; the engine's step uses loss_stages() only, so a
    subclass that changed loss() alone would train on something else than it reports."""
    with pytest.raises(TypeError, match="overrides loss.*loss_stages"):

        class Custom(AutoMixClassifier):
            def loss(self, inputs, labels):
                return super().loss(inputs, labels)


def test_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY},
        "method": {"classifier": {"mask_stage": 2}},
        "meta": {"backbone": "resnet8_w8"},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "automix", overrides)
    assert result["run"]["method"] == "AutoMix"
    assert set(result) >= {"schema", "status", "run", "metrics", "history", "cost", "env"}
    assert_same_training_state(a, b, ("backbone_k.", "head_k.", "mix_block.", "backbone.", "head."))
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
    assert_neck_is_part_of_the_ema_classifier(tiny, *batch())
