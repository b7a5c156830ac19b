"""MergeMix: ToMe's schedule and bipartite matching by hand, the merged forward against
timm's attention, the recovered scores, the token mask (area vs lambda), the re-scaled
label weights, the two-term loss, errors, the method file, digits training and resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from mbtest.learnable import TINY_VIT, assert_same_training_state, train_step_both_ways
from mbtest.repo import method_of, model_of
from mbtest.training import train_then_resume

from mixbench.mixers import Mixup
from mixbench.mixers.sampling import beta_sample
from mixbench.models import MixedCrossEntropy
from mixbench.models.classifiers.mergemix import (
    MergeMixClassifier,
    bipartite_merge_map,
    merge_schedule,
    merge_tokens,
    merged_cls_scores,
    rescaled_lambda,
    top_token_mask,
)
from mixbench.registry import MODELS

HEAD = {"type": "LinearHead", "num_classes": 5}


def tiny_mergemix(**kw):
    torch.manual_seed(0)
    kw.setdefault("attn_block", -1)  # the tiny ViT has 2 blocks
    return MergeMixClassifier(backbone=TINY_VIT, head=HEAD, **kw)


def test_decreasing_schedule_by_hand():
    # base r = 2: int(2 * 1.5) = 3 down to 1 in steps of -2/3 -> [3, 2, 1, 1] (sum 7); the
    # missing token goes to the first block
    assert merge_schedule(4, 8) == [4, 2, 1, 1]
    rs = merge_schedule(12, 98)
    assert sum(rs) == 98 and len(rs) == 12 and rs[1:] == sorted(rs[1:], reverse=True)
    assert rs[0] == 8 and rs[1] == 12  # the base sums to 102: the first block gives 4 back
    assert merge_schedule(2, 0) == [0, 0]


def test_bipartite_matching_by_hand():
    # tokens 0 (class), 1..4; A = {0, 2, 4}, B = {1, 3}. Token 2 is parallel to token 3
    # (cosine 1; 0.8 to token 1), token 4 closest to token 1 (cosine 0.6): with r = 1 token 2
    # merges into token 3
    metric = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 3.0], [0.0, 2.0], [1.0, 0.0]]])
    token_map, n_new = bipartite_merge_map(metric, 1)
    # kept A tokens in order (0 -> 0, 4 -> 1), then B (1 -> 2, 3 -> 3); token 2 -> token 3's slot
    assert n_new == 4 and token_map[0].tolist() == [0, 2, 3, 3, 1]
    x = torch.arange(10.0).reshape(1, 5, 2)
    size = torch.tensor([[[1.0], [1.0], [1.0], [3.0], [1.0]]])
    merged, new_size = merge_tokens(x, size, token_map, n_new)
    assert new_size[0, :, 0].tolist() == [1, 1, 1, 4]
    assert merged[0, 3].tolist() == pytest.approx(((x[0, 2] + 3 * x[0, 3]) / 4).tolist())
    assert torch.equal(merged[0, :3], x[0, [0, 4, 1]])
    # r = 0 (or nothing to merge): identity
    assert bipartite_merge_map(metric, 0)[0][0].tolist() == [0, 1, 2, 3, 4]


def unfused_attention(vit, x, block):
    seen = []
    vit.blocks[block].attn.fused_attn = False
    hook = vit.blocks[block].attn.attn_drop.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    vit.forward_features(x)
    hook.remove()
    return seen[0]


def test_without_merging_the_scores_are_timms_attention_to_the_class_token():
    clf = tiny_mergemix().eval()
    x = torch.randn(3, 1, 16, 16)
    for block in (0, 1):
        scores = merged_cls_scores(clf.backbone.model, x, [0, 0], block)
        attn = unfused_attention(clf.backbone.model, x, block).sum(1)  # (B, 17, 17), heads summed
        assert torch.allclose(scores, attn[:, 1:, 0], atol=1e-6)


def test_merged_patches_share_their_tokens_score():
    clf = tiny_mergemix().eval()
    x = torch.randn(2, 1, 16, 16)
    scores = merged_cls_scores(clf.backbone.model, x, [6, 0], 1)
    # 6 of 17 tokens merged after block 0: at most 11 distinct scores, at least one repeated
    for row in scores:
        assert len(set(row.tolist())) <= 11
    # the same forward by hand: block 0 of timm, then the merge, then block 1's attention
    vit = clf.backbone.model
    h = vit._pos_embed(vit.patch_embed(x))
    blk = vit.blocks[0]
    keys = []
    hook = blk.attn.qkv.register_forward_hook(lambda m, i, o: keys.append(o))
    h = h + blk.attn(blk.norm1(h))
    hook.remove()
    k = keys[0].reshape(2, 17, 3, 2, 16)[:, :, 1].mean(2)  # keys, mean over heads
    token_map, n_new = bipartite_merge_map(k, 6)
    h, size = merge_tokens(h, torch.ones(2, 17, 1), token_map, n_new)
    h = h + blk.mlp(blk.norm2(h))
    b1 = vit.blocks[1].attn
    qkv = b1.qkv(vit.blocks[1].norm1(h)).reshape(2, n_new, 3, 2, 16).permute(2, 0, 3, 1, 4)
    attn = ((qkv[0] * b1.scale) @ qkv[1].transpose(-2, -1)).softmax(-1).sum(1)
    assert torch.allclose(scores, attn[:, :, 0].gather(1, token_map[:, 1:]), atol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5, 0.99])
def test_token_mask_keeps_the_top_int_lambda_l_patches(lam):
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.3, 0.0, 0.9, 0.2, 0.4]])
    mask = top_token_mask(scores, lam)
    p = int(lam * 8)
    assert mask.sum().item() == p
    expected = torch.zeros(8)
    expected[[5, 1, 2, 7, 3, 6, 0, 4][:p]] = 1  # by score; the tie: 1 first
    assert torch.equal(mask[0], expected)


def test_rescaled_label_weights_by_hand():
    area = torch.tensor([0.5, 0.5, 0.5])
    noise = torch.tensor([-1.0, 0.0, 2.0])
    z = [0.5 - 0.5, 0.5, 0.5 + 1.0]
    expected = [(v - z[0]) / (z[2] - z[0] + 1e-5) for v in z]
    assert rescaled_lambda(area, 0.5, noise).tolist() == pytest.approx(expected)


def test_loss_is_the_definition_step_by_step():
    clf = tiny_mergemix(
        merge_ratio=0.25, attn_block=1, loss={"type": "MixedCrossEntropy", "label_smoothing": 0.1}
    )
    assert clf.schedule == merge_schedule(2, 4)
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    clf.generator = torch.Generator().manual_seed(7)
    clf.mixer.generator = torch.Generator().manual_seed(8)
    losses = clf.loss(x, y)
    assert set(losses) == {"loss", "base_loss"}
    g = torch.Generator().manual_seed(7)
    lam = float(beta_sample(1.0, 1.0, 1, g)[0])
    scores = merged_cls_scores(clf.backbone.model, x, clf.schedule, 1)
    tokens = top_token_mask(scores, lam)
    assert tokens.sum(1).tolist() == [int(16 * lam)] * 6  # area = int(lam L) / L
    index = torch.randperm(6, generator=g)
    for _ in range(10):  # no_repeat pairing
        if not bool((index == torch.arange(6)).any()):
            break
        index = torch.randperm(6, generator=g)
    mask = tokens.reshape(6, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    mixed = mask * x + (1 - mask) * x[index]
    lam_mix = rescaled_lambda(tokens.mean(1), 4 / 16, torch.randn(6, generator=g, dtype=torch.float64))
    assert bool(((lam_mix >= 0) & (lam_mix <= 1)).all())
    soft = lam_mix[:, None] * F.one_hot(y, 5) + (1 - lam_mix[:, None]) * F.one_hot(y[index], 5)
    assert torch.allclose(soft.sum(1), torch.ones(6))
    soft = soft * 0.9 + 0.02
    logits = clf.logits(mixed)
    assert torch.allclose(losses["loss"], -(soft * logits.log_softmax(1)).sum(1).mean(), atol=1e-6)
    base = Mixup(alpha=0.8, generator=torch.Generator().manual_seed(8))(x, y)
    expected = MixedCrossEntropy(0.1)(clf.logits(base.inputs), base)
    assert torch.allclose(losses["base_loss"], expected, atol=1e-6)
    sum(losses.values()).backward()
    assert clf.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_staged_step_equals_one_backward():
    """The engine backpropagates the MergeMix loss before the base forward (one training
    graph alive at a time): the same losses, gradients and BatchNorm-free state as one
    backward of both."""
    clf = tiny_mergemix()
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    (g_staged, log_staged, _, staged), (g_one, log_one, _, one) = train_step_both_ways(
        clf, {"inputs": x, "data_samples": y}
    )
    assert list(log_staged) == list(log_one) == ["loss", "base_loss"]
    assert all(torch.allclose(log_staged[k], log_one[k]) for k in log_one)
    assert g_staged.keys() == g_one.keys() and "backbone.model.blocks.0.attn.qkv.weight" in g_one
    for name in g_one:
        assert torch.allclose(g_staged[name], g_one[name], rtol=1e-5, atol=1e-7), name


def test_same_seed_same_loss_and_area_labels():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    runs = []
    for _ in range(2):
        clf = tiny_mergemix()
        clf.generator = torch.Generator().manual_seed(5)
        clf.mixer.generator = torch.Generator().manual_seed(6)
        runs.append(clf.loss(x, y))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    clf = tiny_mergemix(lam_scale=False)
    clf.generator = torch.Generator().manual_seed(5)
    out = clf.mergemix(x, y)
    assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))
    assert torch.equal(out.inputs, out.mask * x + (1 - out.mask) * x[out.index])


def test_needs_a_plain_vit_and_valid_options():
    with pytest.raises(ValueError, match="ViTBackbone"):
        MergeMixClassifier(
            backbone={"type": "ResNetCIFAR", "depth": 8, "width": 4, "in_channels": 1}, head=HEAD
        )
    with pytest.raises(ValueError, match="patch dropout"):
        MergeMixClassifier(backbone={**TINY_VIT, "patch_drop_rate": 0.5}, head=HEAD)
    for bad in (2, -3, 1.0):
        with pytest.raises(ValueError, match="attn_block"):
            tiny_mergemix(attn_block=bad)
    with pytest.raises(ValueError, match="merge_ratio"):
        tiny_mergemix(merge_ratio=1.0)
    with pytest.raises(ValueError, match="img_size"):
        tiny_mergemix().loss(torch.randn(2, 1, 12, 12), torch.arange(2))


def test_method_file_is_the_published_deit_small_setting():
    assert method_of("mergemix")["name"] == "MergeMix"
    clf = MODELS.build(model_of("mergemix", "deit_small", head={"num_classes": 100}))
    assert isinstance(clf, MergeMixClassifier) and clf.merged == 98 and sum(clf.schedule) == 98
    assert clf.attn_block == 8 and clf.lam_scale and clf.alpha == 1.0
    assert type(clf.mixer).__name__ == "Mixup" and clf.mixer.alpha == 0.8
    assert clf.loss_module.label_smoothing == 0.1
    assert math.isclose(clf.merged / clf.num_patches, 0.5)


def test_tiny_vit_trains_two_epochs_on_digits_and_resumes_exactly(tmp_path):
    overrides = {
        "model": {"backbone": TINY_VIT},
        "meta": {"backbone": "vit_tiny_d2"},
        "method": {"classifier": {"attn_block": -1}},
        "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}},
    }
    result, a, b = train_then_resume(tmp_path, "mergemix", overrides)
    assert result["run"]["method"] == "MergeMix" and result["run"]["backbone"] == "vit_tiny_d2"
    assert_same_training_state(a, b, ["backbone", "head"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_and_runs_under_autocast():
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    clf = tiny_mergemix(attn_block=1).eval()
    clf.generator = torch.Generator().manual_seed(1)
    out = clf.mergemix(x, y)
    clf = clf.cuda()
    clf.generator = torch.Generator().manual_seed(1)
    out_cuda = clf.mergemix(x.cuda(), y.cuda())
    assert torch.equal(out_cuda.mask.cpu(), out.mask) and torch.allclose(
        out_cuda.lam.cpu(), out.lam, atol=1e-6
    )
    with torch.autocast("cuda", dtype=torch.float16):
        losses = clf.train().loss(x.cuda(), y.cuda())
    assert all(torch.isfinite(v) for v in losses.values())
