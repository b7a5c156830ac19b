"""Backbones: output shapes, parameter counts cross-checked against torchvision, stage hooks."""

import pytest
import torch
import torchvision

from mixbench.models import MixupClassifier
from mixbench.registry import MODELS


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def classifier(backbone, num_classes):
    return MixupClassifier(backbone=backbone, head={"type": "LinearHead", "num_classes": num_classes})


def cifar_stem_adjust(tv_model):
    """torchvision's ImageNet stem is a 7x7 conv; the CIFAR stem a 3x3 one (same BN)."""
    c = tv_model.conv1.out_channels
    return n_params(tv_model) - c * 3 * 7 * 7 + c * 3 * 3 * 3


def test_resnet18_cifar_has_11_2m_params_for_100_classes():
    clf = classifier({"type": "ResNetCIFAR", "depth": 18}, 100)
    expected = cifar_stem_adjust(torchvision.models.resnet18(num_classes=100))
    assert n_params(clf) == expected
    assert round(n_params(clf) / 1e6, 1) == 11.2


@pytest.mark.parametrize(
    "ours,theirs",
    [
        ({"type": "ResNetCIFAR", "depth": 34}, torchvision.models.resnet34),
        ({"type": "ResNetCIFAR", "depth": 50}, torchvision.models.resnet50),
        ({"type": "ResNeXtCIFAR", "depth": 50}, torchvision.models.resnext50_32x4d),
    ],
)
def test_param_counts_match_torchvision_layouts(ours, theirs):
    assert n_params(classifier(ours, 10)) == cifar_stem_adjust(theirs(num_classes=10))


def test_wrn_28_8_and_preact18_param_counts():
    # WRN-28-8: 16 -> 128 -> 256 -> 512 channels, 4 pre-activation blocks per stage
    assert (
        round(n_params(classifier({"type": "WideResNet", "depth": 28, "widen_factor": 8}, 100)) / 1e6, 1)
        == 23.4
    )
    assert round(n_params(classifier({"type": "PreActResNetCIFAR"}, 100)) / 1e6, 1) == 11.2


@pytest.mark.parametrize(
    "cfg,channels,hw",
    [
        ({"type": "ResNetCIFAR", "depth": 18, "width": 8}, 64, 4),
        ({"type": "ResNetCIFAR", "depth": 8, "width": 16}, 64, 8),
        ({"type": "ResNetCIFAR", "depth": 20, "width": 16}, 64, 8),
        ({"type": "PreActResNetCIFAR", "width": 8}, 64, 4),
        ({"type": "WideResNet", "depth": 10, "widen_factor": 1}, 64, 8),
        ({"type": "ResNeXtCIFAR", "width": 16, "groups": 4, "base_width": 16}, 512, 4),
    ],
)
def test_output_shapes_and_out_channels(cfg, channels, hw):
    net = MODELS.build(cfg)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, channels, hw, hw)
    assert net.out_channels[-1] == channels


def test_stage_hook_sees_every_stage_and_can_replace():
    net = MODELS.build({"type": "ResNetCIFAR", "depth": 18, "width": 8}).eval()
    seen = []

    def hook(k, feat):
        seen.append((k, tuple(feat.shape)))
        return feat

    x = torch.randn(2, 3, 32, 32)
    ref = net(x)
    assert torch.equal(net(x, stage_hook=hook), ref)
    assert seen == [
        (0, (2, 3, 32, 32)),
        (1, (2, 8, 32, 32)),
        (2, (2, 16, 16, 16)),
        (3, (2, 32, 8, 8)),
        (4, (2, 64, 4, 4)),
    ]
    zeroed = net(x, stage_hook=lambda k, f: f * 0 if k == 4 else f)
    assert torch.count_nonzero(zeroed) == 0
    assert [o.shape[1] for o in net.stage_outputs(x)] == net.out_channels


def test_bad_depth_is_explained():
    with pytest.raises(ValueError, match="depth must be one of"):
        MODELS.build({"type": "ResNetCIFAR", "depth": 19})
    with pytest.raises(ValueError, match="6n \\+ 4"):
        MODELS.build({"type": "WideResNet", "depth": 27})


def test_timm_backbone_local_weights_only(tmp_path):
    net = MODELS.build({"type": "TimmBackbone", "model_name": "resnet18"})
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    ckpt = tmp_path / "w.pth"
    state = {
        k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in net.model.state_dict().items()
    }
    torch.save({"state_dict": state}, ckpt)
    loaded = MODELS.build({"type": "TimmBackbone", "model_name": "resnet18", "pretrained": str(ckpt)})
    assert torch.all(loaded.model.conv1.weight == 0.5)
    with pytest.raises(ValueError, match="never downloads"):
        MODELS.build({"type": "TimmBackbone", "model_name": "resnet18", "pretrained": True})
    with pytest.raises(FileNotFoundError, match="only loads local files"):
        MODELS.build({"type": "TimmBackbone", "model_name": "resnet18", "pretrained": str(tmp_path / "x")})
    with pytest.raises(ValueError, match="timm has no model"):
        MODELS.build({"type": "TimmBackbone", "model_name": "resnet18x"})


def test_timm_vit_features_are_pooled_tokens():
    clf = classifier(
        {
            "type": "TimmBackbone",
            "model_name": "vit_tiny_patch16_224",
            "img_size": 32,
            "patch_size": 8,
            "depth": 2,
        },
        10,
    )
    assert clf.logits(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_timm_swin_nhwc_features_become_nchw():
    net = MODELS.build(
        {
            "type": "TimmBackbone",
            "model_name": "swin_tiny_patch4_window7_224",
            "img_size": 32,
            "window_size": 2,
            "embed_dim": 16,
            "depths": [1, 1],
            "num_heads": [1, 1],
        }
    )
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 32, 4, 4) and net.out_channels == [32]


def test_timm_convnext_keeps_its_head_layernorm():
    """ConvNeXt's last LayerNorm sits in timm's head, after pooling: the backbone must
    return timm's own pre-logits features, not the un-normalised map."""
    net = MODELS.build({"type": "TimmBackbone", "model_name": "convnext_atto"}).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 320) and net.out_channels == [320]
        torch.testing.assert_close(out, net.model(x))  # num_classes=0: pooled + normalised
        unnormed = net.model.forward_features(x).mean((2, 3))
        assert not torch.allclose(out, unnormed, atol=1e-3)
        seen = {}  # the stage hook sees the map before pooling (AutoMix, AlignMix need it)
        hooked = net(x, stage_hook=lambda k, f: seen.setdefault(k, f))
        assert seen[0] is x and seen[1].shape == (2, 320, 1, 1)
        torch.testing.assert_close(hooked, out)


VIT4 = {
    "type": "ViTBackbone",
    "model_name": "vit_tiny_patch16_224",
    "img_size": 16,
    "patch_size": 4,
    "embed_dim": 16,
    "depth": 4,
    "num_heads": 2,
    "in_chans": 1,
    "num_stages": 2,
}


def test_vit_stages_are_block_groups_seen_as_patch_maps():
    torch.manual_seed(0)
    vit = MODELS.build(VIT4).eval()
    assert vit.num_stages == 2 and vit.stage_ends == [2, 4] and vit.out_channels == [16, 16]
    assert MODELS.build({**VIT4, "depth": 12, "num_stages": 4}).stage_ends == [3, 6, 9, 12]
    single = MODELS.build({**VIT4, "num_stages": None})  # default: TimmBackbone's one stage
    assert single.num_stages == 1 and single.out_channels == [16]
    x = torch.randn(3, 1, 16, 16)
    seen = {}

    def record(k, feat):
        seen[k] = feat
        return feat

    out = vit(x, stage_hook=record)
    assert torch.allclose(out, vit(x), atol=1e-6)  # an identity hook changes nothing
    m = vit.model
    tokens = m.blocks[:2](m._pos_embed(m.patch_embed(x)))
    assert torch.equal(seen[0], x) and seen[2].shape == (3, 16)
    assert seen[1].shape == (3, 16, 4, 4)
    # patch token i is at row i // 4, column i % 4
    assert torch.allclose(seen[1][:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2], atol=1e-6)
    assert [f.shape for f in vit.stage_outputs(x)] == [(3, 16, 4, 4), (3, 16)]
    # a hook's replacement of the patch map is what the next blocks read; the class token
    # is carried unchanged
    zeroed = vit(x, stage_hook=lambda k, f: torch.zeros_like(f) if k == 1 else f)
    cls = tokens[:, :1]
    expected = m.forward_head(
        m.norm(m.blocks[2:](torch.cat([cls, torch.zeros_like(tokens[:, 1:])], 1))), pre_logits=True
    )
    assert torch.allclose(zeroed, expected, atol=1e-6)
    with pytest.raises(ValueError, match="patch map's shape"):
        vit(x, stage_hook=lambda k, f: f[:, :, :2] if k == 1 else f)
    with pytest.raises(ValueError, match="num_stages"):
        MODELS.build({**VIT4, "num_stages": 5})


def test_manifoldmix_mixes_a_hidden_vit_stage():
    from mixbench.mixers import ManifoldMix

    torch.manual_seed(0)
    clf = MixupClassifier(
        backbone=VIT4,
        head={"type": "LinearHead", "num_classes": 5},
        mixer={"type": "ManifoldMix", "alpha": 1.0, "stages": [1]},
    )
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    clf.mixer.generator = torch.Generator().manual_seed(0)
    loss = clf.loss(x, y)["loss"]
    out = ManifoldMix(alpha=1.0, stages=[1], generator=torch.Generator().manual_seed(0))(x, y, model=clf)
    assert out.stage_hook.stage == 1 and 0 < float(out.lam[0]) < 1
    assert torch.allclose(loss, clf.loss_module(clf.logits(x, stage_hook=out.stage_hook), out), atol=1e-6)
    assert not torch.allclose(clf.logits(x, stage_hook=out.stage_hook), clf.logits(x))


@pytest.mark.parametrize(
    "cls, kw",
    [
        ("ResNetCIFAR", {"depth": 18, "width": 16}),
        ("WideResNet", {"depth": 16, "widen_factor": 2}),
        ("PreActResNetCIFAR", {"depth": 18, "width": 16}),
    ],
)
def test_init_schemes_give_the_documented_weight_scales(cls, kw):
    """kaiming: conv weights ~ N(0, 2 / (out * k * k)) (fan_out, ReLU gain); pytorch: the
    layer's default, uniform in +-1/sqrt(in * k * k), std = bound / sqrt(3). Checked on every
    convolution with at least 4096 weights (std within 5%), BN at one and zero either way."""
    import math

    for scheme in ("kaiming", "pytorch"):
        torch.manual_seed(0)
        net = MODELS.build({"type": cls, "init": scheme, **kw})
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 4096]
        assert convs
        for conv in convs:
            out_c, in_c, kh, kw_ = conv.weight.shape
            if scheme == "kaiming":
                want = math.sqrt(2.0 / (out_c * kh * kw_))
            else:
                want = 1.0 / math.sqrt(in_c * kh * kw_) / math.sqrt(3.0)
            assert conv.weight.std().item() == pytest.approx(want, rel=0.05), (scheme, conv)
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    with pytest.raises(ValueError, match="init must be one of kaiming, pytorch"):
        MODELS.build({"type": cls, "init": "xavier", **kw})


def test_zero_init_residual_makes_every_block_its_shortcut_and_the_head_init_std():
    """zero_init_residual: the last BN of each residual branch has weight 0, so at init every
    block's branch outputs its BN bias (0): the block equals relu(shortcut(x)). init_std: the
    head's weights ~ N(0, std^2), bias 0."""
    for cfg in (
        {"type": "ResNetCIFAR", "depth": 18, "width": 8},
        {"type": "ResNeXtCIFAR", "width": 16, "base_width": 4, "groups": 2},
    ):
        torch.manual_seed(0)
        net = MODELS.build({**cfg, "zero_init_residual": True}).eval()
        x = torch.randn(2, 3, 16, 16)
        feat = net.stem(x)
        for stage in net.stages:
            for blk in stage:
                assert torch.count_nonzero(blk.body[-1].weight) == 0
                assert torch.count_nonzero(blk.body(feat)) == 0
                assert torch.equal(blk(feat), torch.relu(blk.shortcut(feat)))
                feat = blk(feat)
        plain = MODELS.build(cfg)
        assert all(torch.count_nonzero(s[0].body[-1].weight) > 0 for s in plain.stages)
    with pytest.raises(ValueError, match="zero_init_residual must be true or false"):
        MODELS.build({"type": "ResNetCIFAR", "depth": 8, "zero_init_residual": "yes"})
    torch.manual_seed(0)
    head = MODELS.build({"type": "LinearHead", "num_classes": 100, "in_channels": 256, "init_std": 0.01})
    assert head.fc.weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(head.fc.bias == 0)
    default = MODELS.build({"type": "LinearHead", "num_classes": 100, "in_channels": 256})
    assert default.fc.weight.abs().max() <= 1 / 16 and default.fc.weight.std().item() > 0.02
    with pytest.raises(ValueError, match="init_std must be a positive number"):
        MODELS.build({"type": "LinearHead", "num_classes": 10, "in_channels": 8, "init_std": 0})
