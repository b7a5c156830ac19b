"""AutoMix on a ViT: the Mix Block reads a hidden stage of ViTBackbone as a patch-token map."""

import torch
from mbtest.learnable import TINY_VIT
from mbtest.training import train_on_digits

from mixbench.models import AutoMixClassifier
from mixbench.models.classifiers.automix import stage_features

TINY_VIT4 = {**TINY_VIT, "depth": 4, "num_stages": 2}


def test_mix_block_reads_the_vits_stage_map():
    torch.manual_seed(0)
    clf = AutoMixClassifier(backbone=TINY_VIT4, head={"type": "LinearHead", "num_classes": 5}, mask_stage=1)
    x = torch.randn(4, 1, 16, 16)
    feat = stage_features(clf.backbone_k, x, 1)
    assert feat.shape == (4, 32, 4, 4) and clf.mix_block.query.in_channels == 32
    losses = clf.loss(x, torch.arange(4) % 5)
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_tiny_vit_automix_trains_two_epochs_on_digits(tmp_path):
    result = train_on_digits(
        tmp_path,
        "automix",
        {
            "model": {"backbone": TINY_VIT4},
            "method": {"classifier": {"mask_stage": 1}},
            "meta": {"backbone": "vit_tiny_d4"},
        },
    )
    assert result["run"]["method"] == "AutoMix" and result["run"]["backbone"] == "vit_tiny_d4"
