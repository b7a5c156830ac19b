"""AlignMix: Sinkhorn plan, alignment, hook placement, gradients, the common contract."""

import math
import types

import pytest
import torch
from mbtest.mixers import (
    TinyClassifier,
    check_batch_size_one,
    check_dtypes_and_formats,
    check_output,
    check_stage_hook_cpu_cuda_equal,
    make_batch,
    requires_cuda,
    seeded,
)
from scipy import stats

from mixbench.mixers import AlignMix, Mixup
from mixbench.mixers._sinkhorn import sinkhorn_plan
from mixbench.mixers.alignmix import aligned_mix, assignment_matrix


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return TinyClassifier()


def reference_sinkhorn(cost, eps, n_iter):
    """Textbook matrix-scaling Sinkhorn in float64 (valid when exp(-C/eps) does not underflow)."""
    k = torch.exp(-cost.double() / eps)
    n, m = cost.shape[-2:]
    u = torch.ones(cost.shape[0], n, dtype=torch.float64)
    v = torch.ones(cost.shape[0], m, dtype=torch.float64)
    for _ in range(n_iter):
        u = (1.0 / n) / (k @ v[..., None])[..., 0]
        v = (1.0 / m) / (k.transpose(1, 2) @ u[..., None])[..., 0]
    return u[..., None] * k * v[:, None, :]


def test_sinkhorn_marginals_are_uniform():
    g = seeded(0)
    cost = torch.rand(5, 16, 16, generator=g) * 3
    plan = sinkhorn_plan(cost, eps=0.1, max_iter=100, tol=1e-6)
    assert plan.shape == (5, 16, 16) and plan.dtype == torch.float32
    torch.testing.assert_close(plan.sum(2), torch.full((5, 16), 1 / 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((5, 16), 1 / 16), atol=1e-6, rtol=0)
    assert bool((plan >= 0).all())


def test_sinkhorn_matches_textbook_sinkhorn():
    cost = torch.rand(3, 9, 7, generator=seeded(1))
    plan = sinkhorn_plan(cost, eps=0.5, max_iter=200, tol=0)
    torch.testing.assert_close(plan.double(), reference_sinkhorn(cost, 0.5, 200), atol=1e-6, rtol=1e-4)


def official_rule_sinkhorn(cost, eps=0.1, max_iter=100, thresh=0.1):
    """The official AlignMixup iteration in its own form (potentials u, v in cost units,
    stop once the batch-mean L1 change of u is below thresh), float64; returns (plan, its)."""
    c = cost.double()
    b, n, m = c.shape
    u, v = torch.zeros(b, n, dtype=torch.float64), torch.zeros(b, m, dtype=torch.float64)
    for it in range(1, max_iter + 1):  # noqa: B007  (the count is returned)
        u_prev = u
        u = eps * (math.log(1 / n) - torch.logsumexp((-c + u[:, :, None] + v[:, None, :]) / eps, 2)) + u
        v = eps * (math.log(1 / m) - torch.logsumexp((-c + u[:, :, None] + v[:, None, :]) / eps, 1)) + v
        if (u - u_prev).abs().sum(1).mean() < thresh:
            break
    return torch.exp((-c + u[:, :, None] + v[:, None, :]) / eps), it


def test_official_stopping_rule():
    cost = torch.rand(4, 16, 16, generator=seeded(6)) * 3
    ref, its = official_rule_sinkhorn(cost)
    assert 1 < its < 100
    plan = sinkhorn_plan(cost, eps=0.1, tol=0, potential_tol=0.1)
    torch.testing.assert_close(plan.double(), ref, atol=1e-6, rtol=1e-5)
    converged = sinkhorn_plan(cost, eps=0.1)
    assert (plan - converged).abs().max() > 1e-3
    feat = torch.randn(4, 3, 4, 4, generator=seeded(7))
    model = tiny_classifier().eval()
    out = AlignMix(official_stop=True, input_prob=0.0, align="self", generator=seeded(0))(
        *make_batch(b=4), model=model
    )
    r = (
        sinkhorn_plan(
            torch.cdist(feat.flatten(2).mT, feat[out.index].flatten(2).mT).square(), tol=0, potential_tol=0.1
        )
        * 16
    )
    expected = out.lam.view(-1, 1, 1) * (feat.flatten(2) @ r) + (1 - out.lam.view(-1, 1, 1)) * feat[
        out.index
    ].flatten(2)
    torch.testing.assert_close(out.stage_hook(3, feat).flatten(2), expected)


def test_clamped_logsumexp_equals_torch():
    from mixbench.mixers._sinkhorn import _logsumexp

    t = -torch.rand(4, 9, 7, generator=seeded(8), dtype=torch.float64) * 5000
    t[:, :, 0] = 0.5  # one dominant term per row, the rest underflowing
    for dim in (1, 2):
        torch.testing.assert_close(_logsumexp(t, dim), torch.logsumexp(t, dim), atol=1e-12, rtol=0)
        torch.testing.assert_close(_logsumexp(t.float() / 100, dim), torch.logsumexp(t.float() / 100, dim))


def test_sinkhorn_is_stable_for_large_costs():
    # exp(-C / eps) underflows to 0 in the plain form; the log domain keeps a valid plan
    cost = torch.rand(2, 16, 16, generator=seeded(2)) * 1e4
    plan = sinkhorn_plan(cost, eps=0.1)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(1), torch.full((2, 16), 1 / 16), atol=1e-6, rtol=0)


def distinct_features(b=4, c=6, h=3, w=3, seed=0):
    """Feature maps whose positions are far apart (pairwise squared distances >> eps)."""
    return 3 * torch.randn(b, c, h, w, generator=seeded(seed))


def test_identical_inputs_align_to_identity():
    feat = distinct_features()
    r = assignment_matrix(feat, feat)
    torch.testing.assert_close(r, torch.eye(9).expand(4, 9, 9), atol=1e-3, rtol=0)
    lam = torch.tensor([0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    for align_partner in (True, False):
        torch.testing.assert_close(aligned_mix(feat, feat, lam, align_partner), feat, atol=1e-3, rtol=0)


def test_alignment_undoes_a_spatial_permutation():
    feat = distinct_features()
    perm = torch.randperm(9, generator=seeded(3))
    partner = feat.flatten(2)[:, :, perm].view_as(feat)  # same features, shuffled positions
    r = assignment_matrix(feat, partner)
    # position k of feat is partner's position perm^-1(k)
    expected = torch.zeros(9, 9)
    expected[perm, torch.arange(9)] = 1
    torch.testing.assert_close(r, expected.expand(4, 9, 9), atol=1e-3, rtol=0)
    lam = torch.full((4,), 0.25, dtype=torch.float64)
    # the partner moved to feat's positions is feat itself
    torch.testing.assert_close(aligned_mix(feat, partner, lam, True), feat, atol=1e-3, rtol=0)
    # feat moved to the partner's positions is the partner
    torch.testing.assert_close(aligned_mix(feat, partner, lam, False), partner, atol=1e-3, rtol=0)


def test_aligned_mix_formula_and_shapes():
    feat = torch.randn(3, 5, 2, 4, generator=seeded(4))
    partner = torch.randn(3, 5, 2, 4, generator=seeded(5))
    lam = torch.tensor([0.2, 0.6, 1.0], dtype=torch.float64)
    r = assignment_matrix(feat, partner)
    assert r.shape == (3, 8, 8)
    torch.testing.assert_close(r.sum(1), torch.ones(3, 8), atol=1e-5, rtol=0)
    a, a2, lv = feat.flatten(2), partner.flatten(2), lam.float().view(-1, 1, 1)
    out = aligned_mix(feat, partner, lam, True)
    assert out.shape == feat.shape
    torch.testing.assert_close(out.flatten(2), lv * a + (1 - lv) * a2 @ r.transpose(1, 2))
    out = aligned_mix(feat, partner, lam, False)
    torch.testing.assert_close(out.flatten(2), lv * (a @ r) + (1 - lv) * a2)


@pytest.mark.parametrize("align", ["partner", "self"])
def test_feature_branch_mixes_the_last_stage_only(align):
    model = tiny_classifier().eval()
    x, y = make_batch(b=6)
    out = AlignMix(input_prob=0.0, align=align, generator=seeded(0))(x, y, model=model)
    assert out.stage_hook.stage == model.backbone.num_stages == 3
    assert torch.equal(out.inputs, x)
    seen = []

    def recording(k, feat):
        new = out.stage_hook(k, feat)
        seen.append((k, new is feat))
        if k == 3:
            expected = aligned_mix(feat, feat[out.index], out.lam.double(), align == "partner")
            torch.testing.assert_close(new, expected)
        return new

    model.logits(x, stage_hook=recording)
    assert seen == [(0, True), (1, True), (2, True), (3, False)]


def test_input_branch_is_mixup():
    x, y = make_batch(b=6)
    out = AlignMix(input_prob=1.0, generator=seeded(2))(x, y, model=tiny_classifier())
    ref = Mixup(alpha=2.0, generator=seeded(2))(x, y)
    assert out.stage_hook.stage == 0
    assert torch.equal(out.lam, ref.lam) and torch.equal(out.index, ref.index)
    assert torch.equal(out.stage_hook(0, x), ref.inputs)


def test_input_and_direction_are_drawn_per_batch():
    mixer = AlignMix(generator=seeded(0))
    model = tiny_classifier()
    x, y = make_batch(b=4)
    stages = [mixer(x, y, model=model).stage_hook.stage for _ in range(200)]
    n_input = stages.count(0)
    assert stages.count(3) == 200 - n_input
    assert stats.binomtest(n_input, 200, 0.5).pvalue > 1e-3


def test_gradients_flow_to_both_samples_of_a_pair():
    model = tiny_classifier().eval()  # eval: no batch-statistics coupling between samples
    x, y = make_batch(b=6)
    x.requires_grad_(True)
    for align in ("partner", "self"):
        x.grad = None
        out = AlignMix(input_prob=0.0, align=align, generator=seeded(4))(x, y, model=model)
        i = int((out.index != torch.arange(6)).nonzero()[0])
        j = int(out.index[i])
        model.logits(out.inputs, stage_hook=out.stage_hook)[i].sum().backward()
        grad_norm = x.grad.flatten(1).norm(dim=1)
        assert grad_norm[i] > 0 and grad_norm[j] > 0
        assert torch.all(grad_norm[[k for k in range(6) if k not in (i, j)]] == 0)


@pytest.mark.parametrize(
    "lam_mode,pairing", [("batch", "random"), ("elem", "random"), ("pair", "reverse"), ("batch", "roll")]
)
def test_output_contract(lam_mode, pairing):
    x, y = make_batch()
    mixer = AlignMix(lam_mode=lam_mode, pairing=pairing, input_prob=0.0, generator=seeded(0))
    model = tiny_classifier()
    out = check_output(mixer, x, y, model=model, mask_method=False)
    logits = model.logits(out.inputs, stage_hook=out.stage_hook)
    assert logits.shape == (6, 5) and torch.isfinite(logits).all()


def test_shared_checks_reproducibility_and_lambda():
    model = tiny_classifier().eval()
    check_batch_size_one(AlignMix(), model=model)
    check_dtypes_and_formats(AlignMix(input_prob=0.0), model=tiny_classifier())
    x, y = make_batch()
    logits = []
    for seed in (7, 7, 8):
        out = AlignMix(generator=seeded(seed))(x, y, model=model)
        logits.append(model.logits(out.inputs, stage_hook=out.stage_hook))
    assert torch.equal(logits[0], logits[1]) and not torch.equal(logits[0], logits[2])
    mixer = AlignMix(alpha=2.0, lam_mode="elem", generator=seeded(0))
    lam = mixer(*make_batch(b=400, h=4, w=4), model=model).lam.double().numpy()
    assert stats.kstest(lam, stats.beta(2.0, 2.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_runs_in_each_dtype(dtype):
    model = tiny_classifier().to(dtype)
    x, y = make_batch(dtype=dtype)
    out = AlignMix(input_prob=0.0, generator=seeded(0))(x, y, model=model)
    logits = model.logits(out.inputs, stage_hook=out.stage_hook)
    assert logits.dtype == dtype and torch.isfinite(logits.float()).all()


def test_clear_errors():
    x, y = make_batch()
    with pytest.raises(ValueError, match="needs the model"):
        AlignMix()(x, y)
    with pytest.raises(TypeError, match="num_stages"):
        AlignMix()(x, y, model=types.SimpleNamespace(backbone=torch.nn.Identity()))
    with pytest.raises(TypeError, match="backbone"):
        AlignMix()(x, y, model=torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="eps"):
        AlignMix(eps=0)
    with pytest.raises(ValueError, match="max_iter"):
        AlignMix(max_iter=0)
    with pytest.raises(ValueError, match="align"):
        AlignMix(align="both")
    with pytest.raises(ValueError, match="input_prob"):
        AlignMix(input_prob=1.5)
    with pytest.raises(ValueError, match=r"\(B, n, m\)"):
        sinkhorn_plan(torch.zeros(4, 4))


def test_real_resnet_training_step():
    from mixbench.models.classifiers.mixup_classifier import MixupClassifier

    torch.manual_seed(0)
    model = MixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 18, "width": 4},
        head={"type": "LinearHead", "num_classes": 5},
        mixer={"type": "AlignMix", "input_prob": 0.0},
    )
    x, y = make_batch(b=4)
    out = model.mixer(x, y, model=model)
    assert out.stage_hook.stage == model.backbone.num_stages == 4
    loss = model.loss(x, y)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.stem[0].weight.grad.abs().sum() > 0


@requires_cuda
def test_cpu_and_cuda_agree():
    x, y = make_batch()
    check_stage_hook_cpu_cuda_equal(
        lambda: AlignMix(input_prob=0.0, generator=seeded(3)),
        x,
        y,
        torch.randn(6, 8, 4, 4, generator=seeded(1)),
        tiny_classifier,
        atol=1e-4,
        rtol=1e-4,
    )
