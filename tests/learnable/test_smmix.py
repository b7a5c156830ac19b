"""SMMix (ICCV 2023): max-min window selection, region mixing, label weights, token labels,
consistency loss, the ViT's patch attention and tokens, digits training and exact resume."""

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import TINY_VIT
from mbtest.repo import method_of, model_of
from mbtest.training import train_on_digits

from mixbench.models import MixedCrossEntropy
from mixbench.models.backbones import ViTBackbone
from mixbench.models.classifiers.smmix import (
    SMMixClassifier,
    region_token_means,
    smmix_images,
    window_corners,
    window_sides,
)
from mixbench.registry import MODELS


def tiny_smmix(**kw):
    torch.manual_seed(0)
    return SMMixClassifier(backbone=TINY_VIT, head={"type": "LinearHead", "num_classes": 5}, **kw)


def test_windows_with_least_and_most_attention_on_a_hand_built_map():
    attn = torch.full((2, 4, 4), 0.05)
    attn[0, 2:4, 0:2] = 0.0  # least attended 2x2 window: rows 2-3, columns 0-1
    attn[0, 0, 3], attn[0, 1, 3] = 0.3, 0.2  # most: a window covering column 3, rows 0-1
    attn[1, 1:3, 1:3] = 0.2  # image 1: the centre is the most attended window
    attn[1, 0, 3] = 0.0  # and the top-right corner the least
    low, high = window_corners(attn, 2)
    assert low.tolist() == [[2, 0], [0, 2]]
    assert high.tolist() == [[0, 2], [1, 1]]
    # side 1: single patches
    low, high = window_corners(attn, 1)
    assert low[0].tolist() == [2, 0] and high[0].tolist() == [0, 3] and high[1].tolist() == [1, 1]
    with pytest.raises(ValueError, match="side"):
        window_corners(attn, 5)


def test_min_window_of_each_image_receives_the_partners_max_window():
    # 2 images, 8x8 pixels on a 4x4 grid of 2x2-pixel patches; every pixel value distinct
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    attn = torch.full((2, 4, 4), 0.05)
    attn[0, 2:4, 0:2] = 0.0  # image 0: least at patch (2, 0); most anywhere else
    attn[0, 0:2, 2:4] = 0.2  # image 0: most at patch (0, 2)
    attn[1, 0:2, 0:2] = 0.0  # image 1: least at patch (0, 0)
    attn[1, 1:3, 1:3] = 0.3  # image 1: most at patch (1, 1)
    index = torch.tensor([1, 0])
    mixed, keep = smmix_images(x, attn, index, 2)
    expected = x.clone()
    expected[0, :, 4:8, 0:4] = x[1, :, 2:6, 2:6]  # image 1's most attended window
    expected[1, :, 0:4, 0:4] = x[0, :, 0:4, 4:8]  # image 0's most attended window
    assert torch.equal(mixed, expected)
    keep_expected = torch.ones(2, 4, 4)
    keep_expected[0, 2:4, 0:2] = 0
    keep_expected[1, 0:2, 0:2] = 0
    assert torch.equal(keep, keep_expected)
    assert torch.equal(x, torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8))
    with pytest.raises(ValueError, match="tiled"):
        smmix_images(x[..., :7], attn, index, 2)


def test_label_weights_pairing_and_consistency_target_on_hand_built_attention(monkeypatch):
    clf = tiny_smmix(prob=1.0)
    assert clf.sides == (1, 3)  # int(4 * 0.25), int(4 * 0.75)
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    attn = torch.rand(4, 4, 4)
    clean = torch.randn(4, 5)
    monkeypatch.setattr(clf, "motivate", lambda inputs: (clean, attn))
    torch.manual_seed(5)
    side = int(torch.randint(1, 4, ()))
    torch.manual_seed(5)
    out, keep, clean_logits = clf.smmix(x, y)
    lam = 1 - side**2 / 16
    assert torch.allclose(out.lam, torch.full((4,), lam))
    assert keep.sum((1, 2)).tolist() == [16 - side**2] * 4  # one side x side window pasted
    assert out.index.tolist() == [3, 2, 1, 0] and out.y_b.tolist() == [3, 2, 1, 0]
    mixed, keep_ref = smmix_images(x, attn, out.index, side)
    assert torch.equal(out.inputs, mixed) and torch.equal(keep, keep_ref)
    # the whole loss, term by term, against the definitions
    torch.manual_seed(4)
    losses = clf.loss(x, y)
    assert set(losses) == {"loss", "fine_loss", "con_loss"}
    torch.manual_seed(4)
    torch.rand(())  # the SMMix-or-Mixup draw, then the side
    side = int(torch.randint(1, 4, ()))
    mixed, keep = smmix_images(x, attn, out.index, side)
    lam = 1 - side**2 / 16
    feats, tokens = clf.backbone(mixed, return_tokens=True)
    logits = clf.head(feats)
    soft = lam * F.one_hot(y, 5) + (1 - lam) * F.one_hot(y.flip(0), 5)
    assert torch.allclose(losses["loss"], -(soft * logits.log_softmax(1)).sum(1).mean(), atol=1e-6)
    target = (lam * clean + (1 - lam) * clean.flip(0)).softmax(1)
    kl = (target * (target.log() - logits.log_softmax(1))).sum(1).mean()
    assert torch.allclose(losses["con_loss"], kl, atol=1e-6)


def test_token_labels_on_a_hand_built_case():
    tokens = torch.zeros(1, 4, 2)  # a 2x2 grid of 2-d tokens
    tokens[0, :, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    tokens[0, :, 1] = torch.tensor([10.0, 20.0, 30.0, 40.0])
    keep = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # token 1 pasted from the partner
    kept, pasted = region_token_means(tokens, keep)
    assert torch.allclose(kept, torch.tensor([[(1 + 3 + 4) / 3, (10 + 30 + 40) / 3]]))
    assert pasted.tolist() == [[2.0, 20.0]]
    # through the classifier: each region's mean token is classified as its own image's label
    clf = tiny_smmix(prob=1.0, con_weight=0.0)
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([1, 4])
    attn = torch.rand(2, 4, 4)
    clf.motivate = lambda inputs: (torch.zeros(2, 5), attn)
    torch.manual_seed(0)
    losses = clf.loss(x, y)
    assert set(losses) == {"loss", "fine_loss"}
    torch.manual_seed(0)
    torch.rand(())
    mixed, keep = smmix_images(x, attn, torch.tensor([1, 0]), int(torch.randint(1, 4, ())))
    _, tokens = clf.backbone(mixed, return_tokens=True)
    kept, pasted = region_token_means(tokens, keep)
    expected = (F.cross_entropy(clf.head(kept), y) + F.cross_entropy(clf.head(pasted), y.flip(0))) / 2
    assert torch.allclose(losses["fine_loss"], expected, atol=1e-6)
    losses["fine_loss"].backward()
    assert clf.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_other_batches_use_the_mixer_and_its_loss_only():
    clf = tiny_smmix(prob=0.0, mixer={"type": "Mixup", "alpha": 1.0})
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    clf.mixer.generator = torch.Generator().manual_seed(2)
    losses = clf.loss(x, y)
    assert set(losses) == {"loss"}
    from mixbench.mixers import Mixup

    out = Mixup(alpha=1.0, generator=torch.Generator().manual_seed(2))(x, y)
    assert torch.allclose(losses["loss"], MixedCrossEntropy()(clf.logits(out.inputs), out), atol=1e-6)


def test_vit_patch_attention_and_tokens():
    torch.manual_seed(0)
    vit = ViTBackbone(**{k: v for k, v in TINY_VIT.items() if k != "type"}).eval()
    x = torch.randn(3, 1, 16, 16)
    feats, attn, tokens = vit(x, return_attn="patches", return_tokens=True)
    assert torch.equal(feats, vit(x)) and attn.shape == (3, 4, 4) and tokens.shape == (3, 16, 32)
    assert torch.allclose(tokens, vit.model.forward_features(x)[:, 1:])
    last = vit.model.blocks[-1].attn
    last.fused_attn = False
    seen = {}
    last.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("attn", i[0]))
    vit(x)
    expected = seen["attn"][:, :, 1:, 1:].mean((1, 2)).reshape(3, 4, 4)
    assert torch.allclose(attn, expected, atol=1e-6) and not attn.requires_grad
    assert torch.allclose(
        vit(x, return_attn="cls")[1], seen["attn"].mean(1)[:, 0, 1:].reshape(3, 4, 4), atol=1e-6
    )
    with pytest.raises(ValueError, match="return_attn"):
        vit(x, return_attn="rows")


def test_motivation_runs_in_eval_mode_without_gradient_and_restores_training():
    clf = tiny_smmix()
    clf.train()
    seen = []
    clf.backbone.model.blocks[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    logits, attn = clf.motivate(torch.randn(2, 1, 16, 16))
    assert seen == [False] and clf.training and clf.backbone.model.blocks[0].training
    assert not logits.requires_grad and logits.shape == (2, 5) and attn.shape == (2, 4, 4)


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="ViTBackbone"):
        SMMixClassifier(
            backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1},
            head={"type": "LinearHead", "num_classes": 5},
        )
    with pytest.raises(ValueError, match="0 < min <= max < 1"):
        window_sides(14, (0.5, 1.0))
    with pytest.raises(ValueError, match="0 patches"):
        window_sides(4, (0.1, 0.5))
    assert window_sides(14, (0.25, 0.75)) == (3, 10)
    with pytest.raises(ValueError, match="fine_weight"):
        tiny_smmix(fine_weight=-1)


def test_config_is_openmixups_deit_small_setting():
    clf = MODELS.build(model_of("smmix", "deit_small", head={"num_classes": 100}))
    assert isinstance(clf, SMMixClassifier) and method_of("smmix")["name"] == "SMMix"
    assert clf.backbone.grid_size == (14, 14) and clf.sides == (3, 10) and clf.prob == 0.8
    assert type(clf.mixer).__name__ == "Mixup" and clf.mixer.alpha == 1.0
    assert clf.loss_module.label_smoothing == 0.1 and (clf.fine_weight, clf.con_weight) == (1.0, 1.0)


def test_tiny_vit_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY_VIT},
        "meta": {"backbone": "vit_tiny_d2"},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result = train_on_digits(tmp_path, "smmix", overrides)
    assert result["run"]["method"] == "SMMix" and result["run"]["backbone"] == "vit_tiny_d2"
    first = tmp_path / "work"
    logged = "".join(p.read_text() for p in first.rglob("scalars.json"))
    assert "fine_loss" in logged and "con_loss" in logged  # SMMix batches ran
    resumed = train_on_digits(
        tmp_path, "smmix", overrides, name="resumed", extra_args=("--resume", first / "epoch_1.pth")
    )
    assert resumed["history"][-1] | {"wall_s": 0} == result["history"][-1] | {"wall_s": 0}
    a = torch.load(first / "epoch_2.pth", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "epoch_2.pth", map_location="cpu", weights_only=False)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixing_equals_cpu_and_the_loss_runs_under_autocast():
    x, attn, index = torch.randn(4, 1, 16, 16), torch.rand(4, 4, 4), torch.tensor([3, 2, 1, 0])
    mixed, keep = smmix_images(x, attn, index, 2)
    mixed_cuda, keep_cuda = smmix_images(x.cuda(), attn.cuda(), index.cuda(), 2)
    assert torch.equal(mixed_cuda.cpu(), mixed) and torch.equal(keep_cuda.cpu(), keep)
    clf = tiny_smmix(prob=1.0).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        losses = clf.loss(x.cuda(), torch.arange(4, device="cuda"))
    assert set(losses) == {"loss", "fine_loss", "con_loss"}
    assert all(torch.isfinite(v) for v in losses.values())
