"""TransMix (CVPR 2022): attention lambda, the ViT backbone's attention, training."""

import dataclasses

import pytest
import torch
from mbtest.learnable import TINY_VIT
from mbtest.training import train_on_digits

from mixbench.mixers import CutMix, Mixup
from mixbench.models import MixedCrossEntropy, TransMixClassifier, transmix_lambda
from mixbench.models.backbones import ViTBackbone


def test_lambda_is_attention_mass_in_the_box_on_a_hand_built_map():
    # 4x4 patch grid over a 16x16 image; the pasted box covers pixels [0:8, 8:16] = patches
    # rows 0-1, columns 2-3 (4 of 16 patches), so the first image keeps area 0.75.
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 0:8, 8:16] = 0
    attn = torch.zeros(1, 4, 4)
    attn[0, 0, 2], attn[0, 1, 3] = 0.3, 0.1  # 0.4 of the mass inside the box
    attn[0, 3, 0] = 0.6  # 0.6 outside
    area = mask.mean((1, 2, 3))
    lam = transmix_lambda(mask, attn, area)
    # first image: attention mass outside the box 0.6 / 1.0, area 0.75, ratio 0.5
    assert lam.item() == pytest.approx(0.5 * 0.75 + 0.5 * 0.6)
    # unnormalised attention (softmax over all tokens incl. the class token): same ratio
    assert transmix_lambda(mask, attn * 0.37, area).item() == pytest.approx(0.675)
    assert transmix_lambda(mask, attn, area, ratio=1.0).item() == pytest.approx(0.6)
    assert transmix_lambda(mask, attn, area, ratio=0.0).item() == pytest.approx(0.75)


def test_vit_attention_equals_the_last_blocks_class_token_row():
    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY_VIT.items() if k != "type"}
    vit = ViTBackbone(**cfg).eval()
    assert vit.grid_size == (4, 4) and vit.out_channels == [32]
    x = torch.randn(3, 1, 16, 16)
    feats, attn = vit(x, return_attn=True)
    assert torch.equal(feats, vit(x)) and feats.shape == (3, 32)
    # reference: the unfused attention matrix of the last block, read at its dropout input
    last = vit.model.blocks[-1].attn
    last.fused_attn = False
    seen = {}
    last.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("attn", i[0]))
    vit(x)
    expected = seen["attn"].mean(1)[:, 0, 1:].reshape(3, 4, 4)
    assert attn.shape == (3, 4, 4) and not attn.requires_grad
    assert torch.allclose(attn, expected, atol=1e-6)


def tiny_transmix(mixer):
    return TransMixClassifier(backbone=TINY_VIT, head={"type": "LinearHead", "num_classes": 5}, mixer=mixer)


def test_loss_uses_the_attention_lambda_for_cutmix_and_keeps_mixup_lambda():
    torch.manual_seed(0)
    clf = tiny_transmix({"type": "CutMix", "alpha": 1.0})
    x, y = torch.randn(6, 1, 16, 16), torch.arange(6) % 5
    clf.mixer.generator = torch.Generator().manual_seed(3)
    loss = clf.loss(x, y)["loss"]
    out = CutMix(alpha=1.0, generator=torch.Generator().manual_seed(3))(x, y)
    feats, attn = clf.backbone(out.inputs, return_attn=True)
    lam = transmix_lambda(out.mask, attn, out.lam)
    assert not torch.allclose(lam, out.lam)
    expected = MixedCrossEntropy()(clf.head(feats), dataclasses.replace(out, lam=lam))
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert clf.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    # Mixup (no mask): the mixer's lambda is kept
    clf = tiny_transmix({"type": "Mixup", "alpha": 1.0})
    clf.mixer.generator = torch.Generator().manual_seed(3)
    out = Mixup(alpha=1.0, generator=torch.Generator().manual_seed(3))(x, y)
    expected = MixedCrossEntropy()(clf.logits(out.inputs), out)
    assert torch.allclose(clf.loss(x, y)["loss"], expected, atol=1e-6)


def test_needs_an_attention_backbone():
    with pytest.raises(ValueError, match="ViTBackbone"):
        TransMixClassifier(
            backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1},
            head={"type": "LinearHead", "num_classes": 5},
        )
    with pytest.raises(ValueError, match="class token"):
        ViTBackbone("resnet18")


def test_tiny_vit_trains_two_epochs_on_digits(tmp_path):
    result = train_on_digits(
        tmp_path, "transmix", {"model": {"backbone": TINY_VIT}, "meta": {"backbone": "vit_tiny_d2"}}
    )
    assert result["run"]["method"] == "TransMix" and result["run"]["backbone"] == "vit_tiny_d2"
