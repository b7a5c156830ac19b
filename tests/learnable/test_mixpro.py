"""MixPro (ICLR 2023): MaskMix's grid mask (area vs lambda, patch alignment, seeds), the
progressive attention label by hand, the classifier's loss against the definition, the
other batches, errors, the method file, digits training and exact resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import TINY_VIT, assert_cuda_loss_equals_cpu, assert_same_training_state
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.mixers import Mixup
from mixbench.mixers.sampling import beta_sample
from mixbench.models import MixedCrossEntropy
from mixbench.models.classifiers.mixpro import MixProClassifier, maskmix_mask, pal_lambda
from mixbench.registry import MODELS

HEAD = {"type": "LinearHead", "num_classes": 5}


def tiny_mixpro(**kw):
    torch.manual_seed(0)
    kw.setdefault("mask_cell", 1)
    return MixProClassifier(backbone=TINY_VIT, head=HEAD, **kw)


@pytest.mark.parametrize("lam", [0.0, 0.05, 0.3, 0.5, 0.77, 1.0])
def test_mask_keeps_ceil_lambda_cells_aligned_on_the_grid(lam):
    g = torch.Generator().manual_seed(1)
    mask = maskmix_mask(6, (16, 16), 4, lam, g)
    assert mask.shape == (6, 1, 16, 16) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    cells = mask[:, 0].reshape(6, 4, 4, 4, 4)  # (B, row, 4 px, column, 4 px)
    assert torch.equal(cells, cells[:, :, :1, :, :1].expand_as(cells))  # constant per cell
    count = math.ceil(16 * lam)
    assert cells[:, :, 0, :, 0].sum((1, 2)).tolist() == [count] * 6
    assert mask.mean((1, 2, 3)).tolist() == pytest.approx([count / 16] * 6)


def test_mask_is_random_per_image_reproducible_and_cut_at_the_border():
    a = maskmix_mask(8, (16, 16), 4, 0.5, torch.Generator().manual_seed(3))
    b = maskmix_mask(8, (16, 16), 4, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert len({tuple(m.flatten().tolist()) for m in a}) > 1  # not one mask for all
    # 10 px with 4-px cells: a 3 x 3 grid, the last row/column of cells 2 px wide
    m = maskmix_mask(2, (10, 10), 4, 4 / 9, torch.Generator().manual_seed(0))
    assert m.shape == (2, 1, 10, 10)
    assert m[:, 0, ::4, ::4].sum((1, 2)).tolist() == [4, 4]  # ceil(9 * 4/9) cells
    assert torch.equal(m[:, :, 8:10, 8:10], m[:, :, 8:9, 8:9].expand(2, 1, 2, 2))


def test_progressive_label_by_hand():
    # 2x2 patch grid, one 1-px patch each; image 0 keeps patches 0 and 3
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    attn = torch.tensor([[[0.1, 0.2], [0.3, 0.2]]])  # mass 0.8, 0.3 on kept patches
    area = torch.tensor([0.5])
    target = torch.tensor([[0.5, 0.5, 0.0]])
    probs = torch.tensor([[0.6, 0.2, 0.2]])
    sim = (0.3 + 0.1) / (math.sqrt(0.5) * math.sqrt(0.44))
    expected = sim * (0.3 / 0.8) + (1 - sim) * 0.5
    assert pal_lambda(mask, attn, area, probs, target).item() == pytest.approx(expected)
    # a prediction orthogonal to the label: the area weight; equal to it: the attention weight
    assert pal_lambda(mask, attn, area, torch.tensor([[0.0, 0.0, 1.0]]), target).item() == pytest.approx(0.5)
    assert pal_lambda(mask, attn, area, target, target).item() == pytest.approx(0.375)


def test_loss_is_the_definition_step_by_step():
    clf = tiny_mixpro(prob=1.0, loss={"type": "MixedCrossEntropy", "label_smoothing": 0.1})
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    clf.generator = torch.Generator().manual_seed(7)
    loss = clf.loss(x, y)["loss"]
    # the same draws by hand: the MaskMix-or-mixer draw, lambda, the partner, the mask
    g = torch.Generator().manual_seed(7)
    assert bool(torch.rand((), generator=g) < 1.0)
    lam0 = float(beta_sample(1.0, 1.0, 1, g)[0])
    index = torch.randperm(6, generator=g)
    mask = maskmix_mask(6, (16, 16), 4, lam0, g)  # mask_cell 1 = 4-px patches
    mixed = mask * x + (1 - mask) * x[index]
    feats, attn = clf.backbone(mixed, return_attn=True)
    logits = clf.head(feats)
    area = mask.mean((1, 2, 3))
    assert area.tolist() == pytest.approx([math.ceil(16 * lam0) / 16] * 6)
    ya, yb = F.one_hot(y, 5).float(), F.one_hot(y[index], 5).float()
    target = (area[:, None] * ya + (1 - area[:, None]) * yb) * 0.9 + 0.02
    sim = F.cosine_similarity(target, logits.softmax(1), dim=1)
    patch_mask = mask[:, 0, ::4, ::4]
    lam_attn = (attn * patch_mask).sum((1, 2)) / attn.sum((1, 2))
    lam = sim * lam_attn + (1 - sim) * area
    assert bool(((lam >= 0) & (lam <= 1)).all()) and not torch.allclose(lam, area)
    soft = lam[:, None] * ya + (1 - lam[:, None]) * yb
    assert torch.allclose(soft.sum(1), torch.ones(6))  # label weights sum to one
    soft = soft * 0.9 + 0.02
    assert torch.allclose(loss, -(soft * logits.log_softmax(1)).sum(1).mean(), atol=1e-6)
    loss.backward()
    assert clf.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_same_seed_same_loss_area_labels_and_the_other_batches():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    losses = []
    for _ in range(2):
        clf = tiny_mixpro(prob=1.0)
        clf.generator = torch.Generator().manual_seed(5)
        losses.append(clf.loss(x, y)["loss"])
    assert torch.equal(*losses)
    # MaskMix alone: the area weight
    clf = tiny_mixpro(prob=1.0, progressive=False)
    clf.generator = torch.Generator().manual_seed(5)
    loss = clf.loss(x, y)["loss"]
    clf.generator = torch.Generator().manual_seed(5)
    torch.rand((), generator=clf.generator)
    out = clf.maskmix(x, y)
    assert torch.allclose(loss, MixedCrossEntropy()(clf.logits(out.inputs), out), atol=1e-6)
    # prob 0: the mixer's batch and loss
    clf = tiny_mixpro(prob=0.0, mixer={"type": "Mixup", "alpha": 1.0})
    clf.mixer.generator = torch.Generator().manual_seed(2)
    out = Mixup(alpha=1.0, generator=torch.Generator().manual_seed(2))(x, y)
    assert torch.allclose(clf.loss(x, y)["loss"], MixedCrossEntropy()(clf.logits(out.inputs), out), atol=1e-6)


def test_needs_a_vit_and_a_valid_cell():
    with pytest.raises(ValueError, match="ViTBackbone"):
        MixProClassifier(
            backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}, head=HEAD
        )
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="mask_cell"):
            tiny_mixpro(mask_cell=bad)
    with pytest.raises(ValueError, match="prob"):
        tiny_mixpro(prob=1.5)


def test_method_file_is_the_official_deit_small_setting():
    assert method_of("mixpro")["name"] == "MixPro"
    clf = MODELS.build(model_of("mixpro", "deit_small", head={"num_classes": 100}))
    assert isinstance(clf, MixProClassifier) and clf.cell_px == 64 and clf.prob == 0.5
    assert clf.alpha == 1.0 and clf.progressive and clf.loss_module.label_smoothing == 0.1
    assert [type(m).__name__ for m in clf.mixer.mixers] == ["Mixup", "CutMix"] and clf.mixer.probs == [
        0.5,
        0.5,
    ]
    # 224 px in 64-px cells: a 4 x 4 grid, the last row and column cut to 32 px
    mask = maskmix_mask(1, (224, 224), clf.cell_px, 0.5, torch.Generator().manual_seed(0))
    assert mask.shape == (1, 1, 224, 224) and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_tiny_vit_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY_VIT},
        "meta": {"backbone": "vit_tiny_d2"},
        "method": {"classifier": {"mask_cell": 2}},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "mixpro", overrides)
    assert result["run"]["method"] == "MixPro" and result["run"]["backbone"] == "vit_tiny_d2"
    assert_same_training_state(a, b, ["backbone", "head"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_and_runs_under_autocast():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    clf = assert_cuda_loss_equals_cpu(tiny_mixpro(prob=1.0), x, y)
    assert clf.maskmix(x.cuda(), y.cuda()).mask.device.type == "cuda"
