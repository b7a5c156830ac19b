"""TokenMix (ECCV 2022): the token count, BEiT block masks and random masks (counts, seeds, the
first block by hand), score maps and label weights by hand, the classifier's loss against the
definition (the model's own maps and a local teacher checkpoint), the teacher's handling
(eval mode, frozen, kept by init_weights, missing file), errors, the method file, digits
training and exact resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import TINY_VIT, assert_cuda_loss_equals_cpu, assert_same_training_state
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.mixers import Mixup
from mixbench.models import MixedCrossEntropy
from mixbench.models.backbones.base import CapabilityError
from mixbench.models.classifiers.tokenmix import (
    TokenMixClassifier,
    block_token_mask,
    masked_token_count,
    normalized_maps,
    random_token_mask,
    tokenmix_weights,
    true_class_scores,
)
from mixbench.registry import MODELS

HEAD = {"type": "LinearHead", "num_classes": 5}
RGB_VIT = {**TINY_VIT, "in_chans": 3}


def tiny_tokenmix(backbone=TINY_VIT, **kw):
    torch.manual_seed(0)
    kw.setdefault("min_tokens", 1)
    return TokenMixClassifier(backbone=backbone, head=HEAD, **kw)


def test_masked_token_count_is_the_official_rule():
    assert masked_token_count(196, 0.5, 14) == 112  # DeiT-S/16 at 224 px
    assert masked_token_count(16, 0.5, 1) == 9
    assert masked_token_count(16, 0.9, 14) == 16  # capped at N
    assert masked_token_count(10, 0.35, 0) == 3  # int() floors


@pytest.mark.parametrize("grid,count", [((14, 14), 112), ((4, 4), 9), ((5, 7), 12)])
def test_block_mask_never_exceeds_the_count_and_mostly_reaches_it(grid, count):
    reached = 0
    for seed in range(40):
        mask = block_token_mask(grid, count, generator=torch.Generator().manual_seed(seed))
        assert mask.shape == grid and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert 1 <= mask.sum() <= count
        reached += int(mask.sum()) == count
    assert reached >= 30


def test_block_mask_is_reproducible_and_random_across_seeds():
    masks = [block_token_mask((14, 14), 112, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def test_first_block_by_hand():
    """The first rectangle drawn on an empty grid, from the same draws by hand."""
    checked = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        mask = block_token_mask((6, 6), 9, generator=torch.Generator().manual_seed(seed))
        u_area, u_aspect = torch.rand(2, generator=g, dtype=torch.float64).tolist()
        area = 1 + 8 * u_area
        aspect = math.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * u_aspect)
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if not (0 < h < 6 and 0 < w < 6 and h * w <= 9):
            continue  # rejected: the next attempt decides
        top = int(torch.randint(0, 6 - h + 1, (), generator=g))
        left = int(torch.randint(0, 6 - w + 1, (), generator=g))
        assert mask[top : top + h, left : left + w].eq(1).all(), seed
        checked += 1
        if h * w == 9:
            assert mask.sum() == 9  # one block filled the budget
    assert checked >= 10


def test_random_mask_has_exactly_count_tokens():
    a = random_token_mask((4, 4), 9, torch.Generator().manual_seed(1))
    b = random_token_mask((4, 4), 9, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.sum() == 9 and a.shape == (4, 4)


def test_true_class_scores_keep_the_top_k_and_clamp():
    # one image, 1x2 positions, 3 classes; label 1
    dense = torch.tensor([[[[2.0, 3.0, 1.0], [4.0, 0.5, 1.0]]]])
    y = torch.tensor([1])
    assert true_class_scores(dense, y, None).tolist() == [[[3.0, 0.5]]]
    assert true_class_scores(dense, y, 1).tolist() == [[[3.0, 0.0]]]  # 2nd position: not best
    assert true_class_scores(dense, y, 2).tolist() == [[[3.0, 0.0]]]  # 0.5 is the 3rd there
    assert true_class_scores(dense, y, 3).tolist() == [[[3.0, 0.5]]]
    assert true_class_scores(-dense, y, None).tolist() == [[[0.0, 0.0]]]  # clamped at 0


def test_normalized_maps_sum_to_one_and_a_zero_map_is_uniform():
    maps = normalized_maps(torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    assert maps.tolist() == [[[0.125, 0.375], [0.0, 0.5]], [[0.25, 0.25], [0.25, 0.25]]]


def test_label_weights_by_hand():
    maps = torch.tensor([[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.0], [0.25, 0.25]]])
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # tokens 0 and 3 from the partner
    w_a, w_b = tokenmix_weights(maps, mask, torch.tensor([1, 0]))
    assert w_a.tolist() == pytest.approx([0.5, 0.25])  # visible: tokens 1 and 2
    assert w_b.tolist() == pytest.approx([0.75, 0.5])  # partner's tokens 0 and 3


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_is_the_definition_step_by_step(normalize):
    clf = tiny_tokenmix(
        prob=1.0,
        normalize_labels=normalize,
        top_k=3,
        loss={"type": "MixedCrossEntropy", "label_smoothing": 0.1},
    ).train()
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    clf.generator = torch.Generator().manual_seed(7)
    loss = clf.loss(x, y)["loss"]
    assert clf.training and clf.backbone.training  # the map pass gave the flags back
    g = torch.Generator().manual_seed(7)
    assert bool(torch.rand((), generator=g) < 1.0)
    tmask = block_token_mask((4, 4), 9, generator=g)  # 1 = partner, 4-px patches
    index = torch.arange(5, -1, -1)  # reverse = x.flip(0)
    pixel = tmask.repeat_interleave(4, 0).repeat_interleave(4, 1)
    mixed = (1 - pixel) * x + pixel * x.flip(0)
    clf.eval()
    with torch.no_grad():
        tokens = clf.backbone.model.forward_features(x)[:, 1:]
        scores = clf.head(tokens)
    clf.train()
    own = scores.gather(2, y.view(-1, 1, 1).expand(-1, 16, 1))[..., 0]
    top = scores.topk(3, dim=2).indices
    own = torch.where((top == y.view(-1, 1, 1)).any(2), own, 0).clamp_min(0)
    maps = own / own.sum(1, keepdim=True)
    flat = tmask.flatten()
    w_a = (maps * (1 - flat)).sum(1)
    w_b = (maps[index] * flat).sum(1)
    ya, yb = F.one_hot(y, 5).float(), F.one_hot(y[index], 5).float()
    if normalize:
        target = (w_a[:, None] * ya + w_b[:, None] * yb) / (w_a + w_b)[:, None]
        assert torch.allclose(target.sum(1), torch.ones(6))  # label weights sum to one
    else:
        target = w_a[:, None] * ya + w_b[:, None] * yb
    target = target * 0.9 + 0.1 / 5
    logits = clf.logits(mixed)
    assert torch.allclose(loss, -(target * logits.log_softmax(1)).sum(1).mean(), atol=1e-6)
    loss.backward()
    assert clf.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_mixed_batch_mask_and_lambda():
    clf = tiny_tokenmix(prob=1.0)
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    clf.generator = torch.Generator().manual_seed(2)
    out = clf.tokenmix(x, y)
    assert out.mask.shape == (4, 1, 16, 16) and torch.equal(out.mask[0], out.mask[3])  # one per batch
    assert torch.equal(out.inputs, out.mask * x + (1 - out.mask) * x.flip(0))
    assert out.mask.mean().item() == pytest.approx(1 - 9 / 16)  # the full count was reached
    cells = out.mask[:, 0].reshape(4, 4, 4, 4, 4)
    assert torch.equal(cells, cells[:, :, :1, :, :1].expand_as(cells))  # whole patches
    assert torch.allclose(out.soft_targets.sum(1), torch.ones(4))
    assert torch.allclose(out.lam, out.soft_targets[torch.arange(4), y])


def test_same_seed_same_loss_and_the_other_batches():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    losses = []
    for _ in range(2):
        clf = tiny_tokenmix(prob=1.0)
        clf.generator = torch.Generator().manual_seed(5)
        losses.append(clf.loss(x, y)["loss"])
    assert torch.equal(*losses)
    clf = tiny_tokenmix(prob=0.0)  # the mixer's batch and loss
    assert clf.mixer.alpha == 0.8 and clf.mixer.pairing == "reverse"
    clf.mixer.generator = torch.Generator().manual_seed(2)
    out = Mixup(alpha=0.8, pairing="reverse", generator=torch.Generator().manual_seed(2))(x, y)
    assert torch.allclose(clf.loss(x, y)["loss"], MixedCrossEntropy()(clf.logits(out.inputs), out), atol=1e-6)


def save_teacher(tmp_path, num_classes=5):
    import timm

    torch.manual_seed(1)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=num_classes).eval()
    path = tmp_path / "teacher.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    return net, str(path)


def test_teacher_from_a_local_checkpoint(tmp_path):
    net, path = save_teacher(tmp_path)
    teacher = {"library": "timm", "name": "test_resnet", "checkpoint": path}
    clf = tiny_tokenmix(RGB_VIT, teacher=teacher, teacher_input_size=64, prob=1.0, top_k=None)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 3, 4])
    with torch.no_grad():
        feat = net.forward_features(F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False))
        dense = torch.einsum("bchw,kc->bhwk", feat, net.get_classifier().weight) + net.get_classifier().bias
    assert feat.shape[-2:] == (2, 2)
    torch.testing.assert_close(clf.dense_scores(x), dense, rtol=1e-5, atol=1e-5)
    own = dense.gather(3, y.view(3, 1, 1, 1).expand(3, 2, 2, 1))[..., 0].clamp_min(0)
    own = F.interpolate(own[:, None], size=(4, 4), mode="bilinear", align_corners=False)[:, 0]
    total = own.sum((1, 2), keepdim=True)
    assert (total > 0).any()
    expected = torch.where(total > 0, own / total, torch.full_like(own, 1 / 16))  # zero: uniform
    torch.testing.assert_close(clf.score_maps(x, y), expected)
    # frozen, always in eval mode, and untouched by init_weights and by training
    before = {k: v.clone() for k, v in clf.teacher_net.state_dict().items()}
    clf.init_weights()
    clf.train()
    assert not clf.teacher_net.training and clf.backbone.training
    assert all(not p.requires_grad for p in clf.teacher_net.parameters())
    clf.loss(x, y)["loss"].backward()
    assert all(p.grad is None for p in clf.teacher_net.parameters())
    assert all(torch.equal(before[k], v) for k, v in clf.teacher_net.state_dict().items())


def test_missing_teacher_checkpoint_names_the_file(tmp_path):
    missing = str(tmp_path / "nfnet.pth")
    with pytest.raises(
        FileNotFoundError,
        match=r"TokenMix teacher checkpoint .*nfnet\.pth.*never "
        r"downloaded.*teacher: null",
    ):
        tiny_tokenmix(teacher={"library": "timm", "name": "test_resnet", "checkpoint": missing})
    _, path = save_teacher(tmp_path, num_classes=7)  # a teacher of other classes
    with pytest.raises(ValueError, match="does not fit"):
        tiny_tokenmix(teacher={"library": "timm", "name": "test_resnet", "checkpoint": path})


def test_clear_errors():
    with pytest.raises(CapabilityError, match="TokenMix"):
        TokenMixClassifier(
            backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}, head=HEAD
        )
    with pytest.raises(ValueError, match="lower min_tokens"):
        tiny_tokenmix(min_tokens=14)  # 8 + 14 >= 16 tokens
    with pytest.raises(ValueError, match="exactly the keys"):
        tiny_tokenmix(teacher={"name": "resnet18"})
    for bad in (
        {"mask_type": "grid"},
        {"top_k": 0},
        {"min_tokens": -1},
        {"prob": 2.0},
        {"normalize_labels": "yes"},
        {"teacher_input_size": 1.5},
    ):
        with pytest.raises(ValueError):
            tiny_tokenmix(**bad)
    clf = tiny_tokenmix(prob=1.0)
    with pytest.raises(ValueError, match="tile"):
        clf.tokenmix(torch.randn(2, 1, 18, 18), torch.arange(2))


def test_method_file_is_the_official_deit_small_setting():
    method = method_of("tokenmix")
    assert method["name"] == "TokenMix"
    assert method["classifier"]["teacher"] == {
        "library": "timm",
        "name": "dm_nfnet_f6",
        "checkpoint": "checkpoints/dm_nfnet_f6.pth",
    }
    cfg = model_of("tokenmix", "deit_small", head={"num_classes": 1000})
    with pytest.raises(FileNotFoundError, match="checkpoints/dm_nfnet_f6.pth"):
        MODELS.build(cfg)
    cfg["teacher"] = None
    clf = MODELS.build(cfg)
    assert isinstance(clf, TokenMixClassifier) and clf.backbone.grid_size == (14, 14)
    assert (clf.prob, clf.mask_ratio, clf.min_tokens, clf.count) == (0.5, 0.5, 14, 112)
    assert (clf.mask_type, clf.top_k, clf.pairing, clf.normalize_labels) == ("block", 5, "reverse", True)
    assert type(clf.mixer).__name__ == "Mixup" and clf.mixer.alpha == 0.8 and clf.mixer.pairing == "reverse"
    assert clf.loss_module.label_smoothing == 0.1


def test_tiny_vit_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY_VIT},
        "meta": {"backbone": "vit_tiny_d2"},
        "method": {"classifier": {"teacher": None, "min_tokens": 1}},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "tokenmix", overrides)
    assert result["run"]["method"] == "TokenMix" and result["run"]["backbone"] == "vit_tiny_d2"
    assert_same_training_state(a, b, ["backbone", "head"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_and_runs_under_autocast(tmp_path):
    x, y = torch.randn(4, 3, 16, 16), torch.arange(4)
    _, path = save_teacher(tmp_path)
    for teacher in (None, {"library": "timm", "name": "test_resnet", "checkpoint": path}):
        clf = tiny_tokenmix(RGB_VIT, prob=1.0, teacher=teacher, teacher_input_size=64)
        clf = assert_cuda_loss_equals_cpu(clf, x, y, atol=1e-4)
        assert clf.tokenmix(x.cuda(), y.cuda()).mask.device.type == "cuda"
