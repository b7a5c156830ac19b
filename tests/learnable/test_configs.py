"""The published-default configs of the learnable methods build what they say."""

from mbtest.repo import method_of, model_of

from mixbench.models import AutoMixClassifier, TransMixClassifier
from mixbench.registry import MODELS


def build(fragment, base):
    """The method file's section and the classifier it builds on a published recipe."""
    return method_of(fragment), MODELS.build(model_of(fragment, base, head={"num_classes": 100}))


def test_automix_config_is_the_published_cifar100_resnet18_setting():
    cfg, clf = build("automix", "resnet18_cifar")
    assert isinstance(clf, AutoMixClassifier)
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
        block.upsampling,
        block.lam_concat,
        block.mask_loss_margin,
    ) == (256, 128, "nearest", False, 0.1)
    assert (clf.end_momentum, clf.momentum_start, clf.mix_block_lr, clf.mix_block_min_lr) == (
        0.999999,
        0.1,
        0.1,
        0.05,
    )
    assert "hooks" not in cfg  # the schedules are the classifier's own
    assert cfg["paramwise_cfg"] == {"custom_keys": {"mix_block": {"lr_mult": 1.0}}}
    assert cfg["name"] == "AutoMix"


def test_transmix_config_is_deit_small_with_the_mixup_cutmix_switch():
    cfg, clf = build("transmix", "deit_small")
    assert isinstance(clf, TransMixClassifier) and clf.ratio == 0.5
    assert clf.backbone.grid_size == (14, 14) and clf.backbone.out_channels == [384]
    mixer = clf.mixer
    assert [type(m).__name__ for m in mixer.mixers] == ["Mixup", "CutMix"] and mixer.probs == [0.2, 0.8]
    assert [m.alpha for m in mixer.mixers] == [0.8, 1.0]
    assert clf.loss_module.label_smoothing == 0.1 and cfg["name"] == "TransMix"
