"""What a method needs from a backbone is checked before training, with a message that names
the method, the need, what the backbone offers and the backbones that have it."""

import pytest
from mbtest.learnable import TINY_VIT as TWO_BLOCK_VIT
from mbtest.repo import REPO, model_of, run_tool

from mixbench.models.backbones import ResNetCIFAR, TimmBackbone, ViTBackbone
from mixbench.models.backbones.base import CapabilityError
from mixbench.registry import MODELS

TINY_CNN = {"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}
TINY_VIT = {**TWO_BLOCK_VIT, "depth": 4}  # 4 blocks: up to 4 hookable stages
HEAD = {"num_classes": 5}


def test_backbones_declare_what_they_offer():
    assert ResNetCIFAR(depth=8, width=4).capabilities == {
        "output_map",
        "feature_map:1",
        "feature_map:2",
        "feature_map:3",
    }
    vit = ViTBackbone(**{k: v for k, v in TINY_VIT.items() if k != "type"}, num_stages=4)
    assert vit.capabilities == {
        "cls_attention",
        "patch_attention",
        "patch_tokens",
        "feature_map:1",
        "feature_map:2",
        "feature_map:3",
    }
    # a timm CNN: a map at its one stage and as output; a timm ViT: tokens, nothing to offer
    assert TimmBackbone("resnet10t").capabilities == {"feature_map:1", "output_map"}
    assert TimmBackbone("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1).capabilities == set()
    # ConvNeXt pools and normalises in its head: the hook sees a map, the output is a vector
    assert TimmBackbone("convnext_atto").capabilities == {"feature_map:1"}


@pytest.mark.parametrize(
    "method, base, model, needs",
    [
        ("transmix", "resnet8_w16_gray", {"backbone": TINY_CNN}, "class-token attention"),
        ("smmix", "resnet8_w16_gray", {"backbone": TINY_CNN}, "class-token attention"),
        ("alignmix", "deit_small", {"backbone": TINY_VIT}, "feature map after stage 1"),
        ("attentivemix", "deit_small", {"backbone": TINY_VIT}, "as the backbone's output"),
        ("snapmix", "deit_small", {"backbone": TINY_VIT}, "as the backbone's output"),
        ("automix", "deit_small", {"backbone": TINY_VIT}, "feature map after stage 3"),
        ("manifoldmix", "deit_small", {"backbone": TINY_VIT}, "at least 2 hookable stages"),
    ],
)
def test_a_method_on_a_backbone_without_what_it_needs_is_refused(method, base, model, needs):
    cfg = model_of(method, base, head=HEAD, **model)
    with pytest.raises(CapabilityError, match=needs) as info:
        MODELS.build(cfg)
    msg = str(info.value)
    assert type(MODELS.build(cfg["backbone"])).__name__ in msg and "Use " in msg


def test_the_same_methods_run_where_the_backbone_offers_it():
    vit4 = {**TINY_VIT, "num_stages": 4}
    for method, base, backbone in (
        ("transmix", "deit_small", TINY_VIT),
        ("smmix", "deit_small", TINY_VIT),
        ("alignmix", "resnet8_w16_gray", TINY_CNN),
        ("automix", "deit_small", vit4),
        ("manifoldmix", "deit_small", vit4),
    ):
        MODELS.build(model_of(method, base, head=HEAD, backbone=backbone))


def test_train_refuses_it_before_training_naming_the_fix(tmp_path):
    proc = run_tool(
        "tools/train.py",
        REPO / "configs/digits/resnet8_mixup.yaml",
        "--work-dir",
        tmp_path,
        "--cfg-options",
        "method={name: TransMix, classifier: {type: TransMixClassifier}}",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "config error" in proc.stderr and "TransMix needs class-token attention" in proc.stderr
    assert "ViTBackbone" in proc.stderr and not (tmp_path / "epoch_1.pth").exists()
