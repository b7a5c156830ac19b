"""AttentiveMix / AttentiveMix+: grid-cell masks from the most activated cells, lam = mask
mean, BN-safe extraction with the trained model, local-checkpoint extractors, the contract."""

import functools

import pytest
import torch
from mbtest.mixers import (
    LAM_MODES_PAIRINGS,
    TinyClassifier,
    check_batch_size_one,
    check_beta_distribution,
    check_cpu_cuda_equal,
    check_dtypes_and_formats,
    check_mask_identity,
    check_output,
    check_reproducible,
    make_batch,
    requires_cuda,
    seeded,
)
from torch import nn

from mixbench.mixers import AttentiveMix, AttentiveMixPlus
from mixbench.mixers.attentivemix import cells_to_pixels


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return TinyClassifier()


class HandBuiltBackbone(nn.Module):
    """Returns a fixed activation map (B, 1, g, g) whatever the input."""

    def __init__(self, act):
        super().__init__()
        self.register_buffer("act", act)

    def forward(self, x, stage_hook=None):
        return self.act


class HandBuiltModel(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.backbone = HandBuiltBackbone(act)


def mask_cells(mask, g):
    """(B, g, g) cell values of a (B, 1, H, W) mask after checking it is constant per cell."""
    b, _, h, w = mask.shape
    rows = torch.arange(h) * g // h
    cols = torch.arange(w) * g // w
    cells = torch.full((b, g, g), -1.0)
    cells[:, rows[:, None], cols[None, :]] = mask[:, 0]
    assert torch.equal(cells_to_pixels(cells, h, w), mask), "mask is not constant on grid cells"
    return cells


@pytest.mark.parametrize("hw,g", [(16, 4), (28, 7), (15, 4)])
def test_mask_is_the_union_of_the_most_activated_cells(hw, g):
    b = 5
    act = torch.randn(b, 1, g, g, generator=seeded(hw))
    x, y = make_batch(b=b, h=hw, w=hw)
    out = AttentiveMix(top_k=6, generator=seeded(0))(x, y, model=HandBuiltModel(act))
    cells = mask_cells(out.mask, g)
    expected = torch.zeros(b, g * g)
    expected.scatter_(1, act.flatten(1).topk(6, dim=1).indices, 1.0)
    assert torch.equal(cells.flatten(1), expected)
    check_mask_identity(out, x)  # inputs == M x + (1 - M) x[index], lam == mask.mean
    if hw % g == 0:
        assert torch.allclose(out.lam, torch.full((b,), 6 / g**2))


def test_patches_of_each_image_are_pasted_onto_its_partner():
    g, hw = 4, 16
    act = torch.zeros(2, 1, g, g)
    act[0, 0, 0, 0] = act[0, 0, 3, 3] = 5.0  # image 0: two hot cells
    act[1, 0, 1, 2] = 7.0  # image 1: one hot cell
    x, y = make_batch(b=2, h=hw, w=hw)
    out = AttentiveMix(top_k=2, pairing="reverse")(x, y, model=HandBuiltModel(act))
    assert out.index.tolist() == [1, 0]
    m = out.inputs
    assert torch.equal(m[0, :, 0:4, 0:4], x[0, :, 0:4, 0:4])
    assert torch.equal(m[0, :, 12:16, 12:16], x[0, :, 12:16, 12:16])
    assert torch.equal(m[0, :, 4:12], x[1, :, 4:12])
    assert torch.equal(m[1, :, 4:8, 8:12], x[1, :, 4:8, 8:12])
    assert torch.equal(m[1, :, 0:4, 0:4], x[1, :, 0:4, 0:4])  # tie among zeros: first cell
    assert torch.equal(m[1, :, 8:16], x[0, :, 8:16])
    assert out.lam.tolist() == [0.125, 0.125]


def test_grid_resizes_the_activation_map():
    act = torch.zeros(3, 1, 2, 2)
    act[:, 0, 1, 0] = 1.0  # bottom-left quarter is hot
    x, y = make_batch(b=3, h=16, w=16)
    out = AttentiveMix(top_k=4, grid=8, generator=seeded(0))(x, y, model=HandBuiltModel(act))
    cells = mask_cells(out.mask, 8)
    assert cells.sum((1, 2)).tolist() == [4.0] * 3
    assert bool((cells[:, 4:, :4].sum((1, 2)) == 4).all())  # all inside the hot quarter
    out = AttentiveMix(top_k=1, grid=1, generator=seeded(0))(x, y, model=HandBuiltModel(act))
    assert torch.equal(out.inputs, x) and out.lam.tolist() == [1.0] * 3


def test_trained_model_extraction_leaves_no_trace():
    model = tiny_classifier().train()
    model.backbone.stages[1].eval()  # a deliberately frozen part stays frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    x, y = make_batch(b=6)
    x.requires_grad_(True)
    out = AttentiveMix(generator=seeded(0))(x, y, model=model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed (BN statistics must not be updated)"
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters()) and x.grad is None
    assert out.mask.requires_grad is False
    # the activations are those of the eval-mode backbone
    with torch.no_grad():
        act = model.eval().backbone(x).mean(1)
    cells = mask_cells(out.mask, act.shape[1])
    expected = torch.zeros_like(act.flatten(1)).scatter_(1, act.flatten(1).topk(6, 1).indices, 1)
    assert torch.equal(cells.flatten(1), expected)


def test_plus_variant_draws_the_number_of_cells_from_beta():
    model = HandBuiltModel(torch.randn(4, 1, 4, 4, generator=seeded(0)))  # 16 cells
    x, y = make_batch(b=4, h=8, w=8)
    mixer = AttentiveMixPlus(correct_lam=False, lam_mode="elem", generator=seeded(0))
    lams, ks = [], []
    for _ in range(100):
        out = mixer(x, y, model=model)
        lams.append(out.lam.double())
        ks.append(out.mask.mean((1, 2, 3)).double() * 16)
    lams, ks = torch.cat(lams), torch.cat(ks)
    check_beta_distribution(lams, 2.0, 8.0)
    torch.testing.assert_close(ks, (lams * 16).floor().clamp(1, 16))
    out = AttentiveMixPlus(generator=seeded(1))(x, y, model=model)
    assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))


@pytest.mark.parametrize("make", [functools.partial(AttentiveMix, top_k=3), AttentiveMixPlus])
def test_shared_contract(make):
    x, y = make_batch()
    model = tiny_classifier()
    for lam_mode, pairing in LAM_MODES_PAIRINGS:
        mixer = make(lam_mode=lam_mode, pairing=pairing, generator=seeded(0))
        out = check_output(mixer, x, y, model=model, mask_method=True)
        check_mask_identity(out, x)
        if lam_mode == "pair":
            assert torch.equal(out.mask.sum((1, 2, 3)), out.mask.sum((1, 2, 3))[out.index])
    check_reproducible(make(), x, y, model=model)
    check_batch_size_one(make(), model=model)
    check_dtypes_and_formats(make(), model=tiny_classifier(), dtypes=(torch.float32, torch.bfloat16))


def save_state(net, path):
    torch.save({"state_dict": net.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize(
    "library,name",
    [("timm", "test_resnet"), ("torchvision", "mobilenet_v3_small"), ("torchvision", "resnet18")],
)
def test_local_checkpoint_extractor(tmp_path, library, name):
    torch.manual_seed(0)
    if library == "timm":
        import timm

        net = timm.create_model(name, pretrained=False)
        features = net.forward_features
    else:
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
        features = net.features if hasattr(net, "features") else nn.Sequential(*list(net.children())[:-2])
    net.eval()
    path = save_state(net, tmp_path / "extractor.pth")
    x, y = make_batch(b=3, h=64, w=64)
    mixer = AttentiveMix(
        top_k=2, extractor={"library": library, "name": name, "checkpoint": path}, generator=seeded(0)
    )
    assert not mixer.needs_model
    out = mixer(x, y)  # no model needed
    with torch.no_grad():
        act = features(x).mean(1)
    cells = mask_cells(out.mask, act.shape[1])
    expected = torch.zeros_like(act.flatten(1)).scatter_(1, act.flatten(1).topk(2, 1).indices, 1)
    assert torch.equal(cells.flatten(1), expected)
    check_mask_identity(out, x)


def test_module_extractor_and_input_size():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 4, stride=4)

        def forward(self, x):
            seen.append(tuple(x.shape))
            return self.conv(x)

    x, y = make_batch(b=2, h=16, w=16)
    out = AttentiveMix(top_k=1, extractor=Probe(), input_size=32, generator=seeded(0))(x, y)
    assert seen == [(2, 3, 32, 32)]
    assert out.mask.shape == (2, 1, 16, 16) and out.lam.tolist() == [1 / 64] * 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_input_size_feeds_a_half_precision_model_its_dtype(dtype):
    x, y = make_batch(b=4, h=16, w=16)
    x = x.to(dtype)
    model = tiny_classifier().to(dtype)
    out = AttentiveMix(top_k=2, input_size=32, generator=seeded(0))(x, y, model=model)
    assert out.inputs.dtype == dtype and out.mask.shape == (4, 1, 16, 16)
    check_mask_identity(out, x)


def test_clear_errors(tmp_path):
    x, y = make_batch()
    with pytest.raises(ValueError, match="needs the model"):
        AttentiveMix()(x, y)
    with pytest.raises(FileNotFoundError, match="never"):
        AttentiveMix(
            extractor={"library": "timm", "name": "test_resnet", "checkpoint": str(tmp_path / "missing.pth")}
        )
    with pytest.raises(ValueError, match="library"):
        AttentiveMix(extractor={"library": "keras", "name": "x", "checkpoint": "y"})
    with pytest.raises(ValueError, match="keys"):
        AttentiveMix(extractor={"name": "resnet18"})
    path = save_state(nn.Linear(2, 2), tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="does not fit"):
        AttentiveMix(extractor={"library": "timm", "name": "test_resnet", "checkpoint": path})
    with pytest.raises(ValueError, match="more than the 4 grid cells"):
        AttentiveMix(top_k=6, grid=2)(x, y, model=tiny_classifier())
    with pytest.raises(ValueError, match="grid=32"):
        AttentiveMix(grid=32)(x, y, model=tiny_classifier())
    with pytest.raises(ValueError, match="top_k must be"):
        AttentiveMix(top_k=0)
    with pytest.raises(ValueError, match="beta"):
        AttentiveMixPlus(beta=-1)
    with pytest.raises(ValueError, match="top_k"):
        AttentiveMixPlus(top_k=3)
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        AttentiveMix(extractor=nn.Flatten())(x, y)


def test_real_resnet_training_step():
    from mixbench.models.classifiers.mixup_classifier import MixupClassifier

    torch.manual_seed(0)
    model = MixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 18, "width": 4},
        head={"type": "LinearHead", "num_classes": 5},
        mixer={"type": "AttentiveMix", "top_k": 6, "grid": 8},
    )
    x, y = make_batch(b=4, h=32, w=32)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    out = model.mixer(x, y, model=model)
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.state_dict().items())
    assert model.training and torch.allclose(out.lam, torch.full((4,), 6 / 64))
    check_mask_identity(out, x)
    loss = model.loss(x, y)["loss"]
    loss.backward()
    assert torch.isfinite(loss)


@requires_cuda
def test_cpu_and_cuda_agree():
    x, y = make_batch()
    act = torch.randn(6, 1, 4, 4, generator=seeded(0))
    for mixer in (AttentiveMix(top_k=3), AttentiveMixPlus(lam_mode="elem")):
        check_cpu_cuda_equal(mixer, x, y, model_factory=lambda: HandBuiltModel(act.clone()))


def test_openmixups_attentivemix_plus_is_beta_2_2():
    """OpenMixup's attentivemix() draws lam ~ Beta(alpha, alpha) (its beta=8 argument is
    swallowed by **kwargs, augments/attentivemix.py:46) and keeps
    top_k = min(max(1, int(cells * lam)), cells) cells of x_i (lines 49-50, 78): beta=2 with
    alpha=2 reproduces it, half the cells on average instead of a fifth."""
    model = HandBuiltModel(torch.randn(4, 1, 7, 7, generator=seeded(0)))  # 49 cells
    x, y = make_batch(b=4, h=14, w=14)
    mixer = AttentiveMixPlus(alpha=2.0, beta=2.0, correct_lam=False, lam_mode="elem", generator=seeded(0))
    outs = [mixer(x, y, model=model) for _ in range(150)]
    lams = torch.cat([o.lam.double() for o in outs])
    check_beta_distribution(lams, 2.0, 2.0)
    kept = torch.cat([o.mask.mean((1, 2, 3)).double() for o in outs]) * 49
    torch.testing.assert_close(kept, (lams * 49).floor().clamp(1, 49))
    assert abs(float(kept.mean()) / 49 - 0.5) < 0.03


def test_extractor_batch_stats_runs_the_extractor_in_training_mode():
    """OpenMixup's backbone_k has frozen weights but BatchNorm in training mode."""

    def extractor():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.BatchNorm2d(4))

    x, y = make_batch(b=4, h=16, w=16)
    frozen, live = extractor(), extractor()
    eval_map = AttentiveMix(top_k=2, extractor=frozen).activation_map(x)
    batch = AttentiveMix(top_k=2, extractor=live, extractor_batch_stats=True)
    batch_map = batch.activation_map(x)
    reference = extractor().train()
    with torch.no_grad():
        torch.testing.assert_close(batch_map, reference(x).mean(1))
        torch.testing.assert_close(eval_map, extractor().eval()(x).mean(1))
    assert not torch.allclose(batch_map, eval_map)
    torch.testing.assert_close(live[1].running_mean, reference[1].running_mean)  # updated
    assert not live[0].weight.requires_grad
    with pytest.raises(ValueError, match="external extractor"):
        AttentiveMix(extractor_batch_stats=True)
