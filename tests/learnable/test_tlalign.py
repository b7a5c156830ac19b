"""TL-Align (ICCV 2023): initial token labels, one alignment step by hand, the whole trace
against timm's attention matrices and against the official (B, N, K) label propagation,
the loss, errors, the method file, digits training and exact resume."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import TINY_VIT, assert_same_training_state
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.mixers import CutMix, Mixup
from mixbench.models import MixedCrossEntropy
from mixbench.models.classifiers.tlalign import TLAlignClassifier, align_step, initial_token_weights
from mixbench.registry import MODELS

HEAD = {"type": "LinearHead", "num_classes": 5}


def tiny_tlalign(**kw):
    torch.manual_seed(0)
    return TLAlignClassifier(backbone=TINY_VIT, head=HEAD, **kw)


def test_initial_weights_are_each_patchs_share_of_the_first_image():
    # 8x8 image on a 4x4 grid of 2x2 patches; the pasted box covers rows 0-2, columns 4-7:
    # patches (0, 2), (0, 3) entirely, patches (1, 2), (1, 3) on their top row only.
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 0:3, 4:8] = 0
    lam = mask.mean((1, 2, 3))
    w = initial_token_weights(mask, lam, (4, 4), prefix=1)
    expected = torch.ones(17)
    expected[0] = 1 - 12 / 64  # the class token: the area weight
    expected[1 + 2], expected[1 + 3] = 0.0, 0.0  # row 0, columns 2, 3
    expected[1 + 6], expected[1 + 7] = 0.5, 0.5  # row 1, columns 2, 3: half their pixels
    assert torch.equal(w[0], expected)
    with pytest.raises(ValueError, match="tile"):
        initial_token_weights(mask[..., :7], lam, (4, 4), prefix=1)


def test_one_alignment_step_by_hand():
    attn = torch.tensor([[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]]])
    w = torch.tensor([[0.4, 1.0, 0.0]])
    # token 0 reads 0.5*0.4 + 0.25*1 + 0.25*0 = 0.45, then (0.45 + 0.4) / 2
    expected = [(0.45 + 0.4) / 2, (1.0 + 1.0) / 2, ((0.08 + 0.2 + 0.0) + 0.0) / 2]
    assert align_step(attn, w)[0].tolist() == pytest.approx(expected)


def unfused_attentions(clf, x):
    """Every block's (B, heads, N, N) attention as timm's unfused path computes it."""
    seen = []
    for block in clf.backbone.model.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    clf.backbone(x)
    return seen


def peaky(clf):
    """A freshly built ViT attends almost uniformly (the class token reads the area weight):
    scale the query/key weights up so that attention picks tokens."""
    with torch.no_grad():
        for block in clf.backbone.model.blocks:
            block.attn.qkv.weight.mul_(8)
    return clf


def test_trace_equals_the_official_label_propagation_through_timms_attention():
    clf = peaky(tiny_tlalign()).eval()
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    out = CutMix(alpha=1.0, pairing="reverse", generator=torch.Generator().manual_seed(3))(x, y)
    assert 0.3 < out.lam[0] < 0.7
    w0 = initial_token_weights(out.mask, out.lam, (4, 4), 1)
    feats, lam = clf.aligned_forward(out.inputs, w0)
    assert torch.equal(feats, clf.backbone(out.inputs))  # alignment does not touch the forward
    # the official code: (B, N, K) token labels, Y <- (mean_h(A) @ Y + Y) / 2 block by block
    attns = unfused_attentions(clf, out.inputs)
    ya, yb = F.one_hot(y, 5).float(), F.one_hot(out.y_b, 5).float()
    labels = w0[:, :, None] * ya[:, None] + (1 - w0[:, :, None]) * yb[:, None]
    for a in attns:
        labels = (a.mean(1) @ labels + labels) / 2
    target = labels[:, 0]  # the class token's label
    expected = lam[:, None] * ya + (1 - lam[:, None]) * yb
    assert torch.allclose(expected, target, atol=1e-6)
    assert torch.allclose(target.sum(1), torch.ones(4), atol=1e-6)
    assert (lam - out.lam).abs().max() > 0.01  # the labels moved with attention


def test_loss_is_mixed_ce_with_the_aligned_weights_and_mixup_keeps_its_lambda():
    clf = tiny_tlalign(loss={"type": "MixedCrossEntropy", "label_smoothing": 0.1})
    x, y = torch.randn(6, 1, 16, 16), torch.arange(6) % 5
    clf.mixer.generator = torch.Generator().manual_seed(3)
    loss = clf.loss(x, y)["loss"]
    out = CutMix(alpha=1.0, pairing="reverse", generator=torch.Generator().manual_seed(3))(x, y)
    feats, lam = clf.aligned_forward(out.inputs, initial_token_weights(out.mask, out.lam, (4, 4), 1))
    expected = MixedCrossEntropy(0.1)(clf.head(feats), dataclasses.replace(out, lam=lam))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert bool(((lam >= 0) & (lam <= 1)).all())
    loss.backward()
    assert clf.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert clf._weights is None  # nothing left behind
    clf = tiny_tlalign(mixer={"type": "Mixup", "alpha": 1.0})
    clf.mixer.generator = torch.Generator().manual_seed(3)
    out = Mixup(alpha=1.0, generator=torch.Generator().manual_seed(3))(x, y)
    assert torch.allclose(clf.loss(x, y)["loss"], MixedCrossEntropy()(clf.logits(out.inputs), out), atol=1e-6)


def test_same_seed_same_loss_and_avg_pooling():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    losses = []
    for _ in range(2):
        clf = tiny_tlalign()
        clf.mixer.generator = torch.Generator().manual_seed(5)
        losses.append(clf.loss(x, y)["loss"])
    assert torch.equal(*losses)
    clf = peaky(TLAlignClassifier(backbone={**TINY_VIT, "global_pool": "avg"}, head=HEAD))
    out = CutMix(alpha=1.0, generator=torch.Generator().manual_seed(1))(x, y)
    w0 = initial_token_weights(out.mask, out.lam, (4, 4), 1)
    _, lam = clf.aligned_forward(out.inputs, w0)
    # mean pooling: the label is the mean of the patch tokens' traced labels
    attns = []
    for block in clf.backbone.model.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: attns.append(i[0].mean(1)))
    clf.backbone(out.inputs)
    w = w0
    for a in attns:
        w = (a @ w[:, :, None])[:, :, 0] / 2 + w / 2
    assert torch.allclose(lam, w[:, 1:].mean(1), atol=1e-6) and (lam - out.lam).abs().max() > 0.01


def test_needs_a_vit_without_patch_dropout():
    with pytest.raises(ValueError, match="ViTBackbone"):
        TLAlignClassifier(
            backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}, head=HEAD
        )
    with pytest.raises(ValueError, match="patch dropout"):
        TLAlignClassifier(backbone={**TINY_VIT, "patch_drop_rate": 0.5}, head=HEAD)
    clf = tiny_tlalign(mixer={"type": "ManifoldMix", "alpha": 1.0, "stages": [1]})
    with pytest.raises(ValueError, match="hidden features"):
        clf.loss(torch.randn(4, 1, 16, 16), torch.arange(4))


def test_method_file_is_the_official_deit_small_setting():
    assert method_of("tlalign")["name"] == "TL-Align"
    clf = MODELS.build(model_of("tlalign", "deit_small", head={"num_classes": 100}))
    assert isinstance(clf, TLAlignClassifier) and clf.backbone.grid_size == (14, 14)
    assert type(clf.mixer).__name__ == "CutMix" and clf.mixer.alpha == 1.0 and clf.mixer.pairing == "reverse"
    assert clf.loss_module.label_smoothing == 0.1


def test_tiny_vit_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY_VIT},
        "meta": {"backbone": "vit_tiny_d2"},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "tlalign", overrides)
    assert result["run"]["method"] == "TL-Align" and result["run"]["backbone"] == "vit_tiny_d2"
    assert_same_training_state(a, b, ["backbone", "head"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_and_runs_under_autocast():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    out = CutMix(alpha=1.0, generator=torch.Generator().manual_seed(1))(x, y)
    w0 = initial_token_weights(out.mask, out.lam, (4, 4), 1)
    clf = tiny_tlalign().eval()
    _, lam = clf.aligned_forward(out.inputs, w0)
    _, lam_cuda = clf.cuda().aligned_forward(out.inputs.cuda(), w0.cuda())
    assert torch.allclose(lam_cuda.cpu(), lam, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = clf.train().loss(x.cuda(), y.cuda())["loss"]
    assert torch.isfinite(loss)
