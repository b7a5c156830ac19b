"""The published-default configs of the learnable methods build what they say."""
from mixbench.config import load_config
from mixbench.models import AutoMixClassifier, TransMixClassifier
from mixbench.registry import MODELS


def build(repo, fragment):
    cfg = load_config(repo / f"configs/mixers/{fragment}.yaml")
    model = dict(cfg["model"])
    model["head"] = {**model["head"], "num_classes": 100}
    return cfg, MODELS.build(model)


def test_automix_config_is_the_published_cifar100_resnet18_setting(repo):
    cfg, clf = build(repo, "automix")
    assert isinstance(clf, AutoMixClassifier)
    assert (clf.alpha, clf.base_momentum, clf.mask_stage, clf.mask_loss_weight, clf.lam_margin) == \
        (2.0, 0.999, 3, 0.1, 0.08)
    block = clf.mix_block
    assert (block.in_channels, block.inter_channels, block.upsampling, block.lam_concat,
            block.mask_loss_margin) == (256, 128, "nearest", False, 0.1)
    assert (clf.end_momentum, clf.momentum_start, clf.mix_block_lr, clf.mix_block_min_lr) == \
        (0.999999, 0.1, 0.1, 0.05)
    assert "custom_hooks" not in cfg      # the schedules are the classifier's own
    assert cfg["optim_wrapper"]["paramwise_cfg"] == {"custom_keys": {"mix_block": {"lr_mult": 1.0}}}
    assert cfg["meta"]["method"] == "AutoMix"


def test_transmix_config_is_deit_small_with_the_mixup_cutmix_switch(repo):
    cfg, clf = build(repo, "transmix")
    assert isinstance(clf, TransMixClassifier) and clf.ratio == 0.5
    assert clf.backbone.grid_size == (14, 14) and clf.backbone.out_channels == [384]
    mixer = clf.mixer
    assert [type(m).__name__ for m in mixer.mixers] == ["Mixup", "CutMix"] and mixer.probs == [0.2, 0.8]
    assert [m.alpha for m in mixer.mixers] == [0.8, 1.0]
    assert clf.loss_module.label_smoothing == 0.1 and cfg["meta"]["method"] == "TransMix"
