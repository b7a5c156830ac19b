"""Co-Mixup: contract and soft targets, images as per-pixel convex combinations whose input
mass equals the soft targets, block-constant weights, exact small-grid DP (brute force),
the objective against its definition, monotone descent, two-way summary, no side effects of
the saliency pass, partitions, reproducibility, errors, a real ResNet step, and 2 epochs on
digits through tools/train.py."""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mbtest.mixers import (
    TinyClassifier,
    assert_outputs_equal,
    check_batch_size_one,
    check_dtypes_and_formats,
    check_output,
    make_batch,
    real_resnet_step,
    requires_cuda,
    seeded,
)
from mbtest.training import train_on_digits
from torch import nn

from mixbench.mixers import CoMixup
from mixbench.mixers._grid_dp import grid_energy, solve_grid
from mixbench.mixers.comixup import comixup_objective


def tiny_classifier(seed=0, num_classes=5):
    torch.manual_seed(seed)
    return TinyClassifier(num_classes=num_classes)


def blob_saliency(b, h, w, seed=0):
    """One Gaussian blob per image at a random place: peaked, like real saliency."""
    g = seeded(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    c = torch.rand(b, 2, generator=g) * torch.tensor([h, w])
    s = 1.5 + torch.rand(b, generator=g) * h / 6
    d2 = (yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * s[:, None, None] ** 2)) + 0.01


def check_convex_combination(out, x):
    """inputs == sum_i up(z)_i x_i, weights >= 0 summing to 1 per pixel, and each input's
    pixel mass equals its weight in ``out.weights``."""
    b, _, h, w = x.shape
    z = out.block_weights  # (B, m, m, P)
    up = F.interpolate(z.permute(0, 3, 1, 2), size=(h, w), mode="nearest")  # (B, P, H, W)
    assert bool((up >= 0).all())
    torch.testing.assert_close(up.sum(1), torch.ones(b, h, w))
    expected = torch.zeros_like(x)
    for o in range(b):
        s0 = int(out.partition_start[o])
        k = int((out.partition_start == s0).sum())
        expected[o] = (up[o, :k, None] * x[s0 : s0 + k]).sum(0)
        mass = torch.zeros(b)
        mass[s0 : s0 + k] = up[o, :k].mean((1, 2))
        torch.testing.assert_close(out.weights[o], mass)
    torch.testing.assert_close(out.inputs, expected)


def test_contract_soft_targets_and_no_side_effects():
    model = tiny_classifier()
    model.backbone.stages[0][1].eval()  # a submodule deliberately in eval mode
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = make_batch(b=10, h=16, w=16)
    out = check_output(CoMixup(m_part=4, generator=seeded(0)), x, y, model=model)
    assert out.soft_targets.shape == (10, 5)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()), (
        "BN running statistics (or parameters) changed"
    )
    assert all(p.grad is None for p in model.parameters())
    assert model.training and not model.backbone.stages[0][1].training
    assert list(out.extra_losses) == ["clean_loss"] and out.extra_losses["clean_loss"].requires_grad
    out.extra_losses["clean_loss"].backward()  # the clean-input loss trains the model
    assert model.head.weight.grad is not None
    assert CoMixup(m_part=4, clean_lam=0.0)(x, y, model=tiny_classifier()).extra_losses == {}


@pytest.mark.parametrize("b,m_part,size", [(12, 6, 16), (10, 4, 16), (9, 4, 16), (9, 4, 18)])
def test_mixed_images_are_convex_combinations_matching_soft_targets(b, m_part, size):
    # size 18: blocks of unequal size (nearest upsampling of the 4 x 4 grid)
    x, _ = make_batch(b=b, h=size, w=size)
    y = torch.arange(b)  # one class per input: targets == weights
    out = CoMixup(m_part=m_part, generator=seeded(1)).mix_with_saliency(
        x, y, blob_saliency(b, size, size), num_classes=b
    )
    check_convex_combination(out, x)
    torch.testing.assert_close(out.soft_targets, out.weights)
    torch.testing.assert_close(out.soft_targets.sum(1), torch.ones(b))
    assert bool((out.weights > 0).sum(1).gt(1).any()), "no output mixes several inputs"
    # outputs only use inputs of their own partition
    start = out.partition_start
    part_of = torch.arange(b)[None, :]
    inside = (part_of >= start[:, None]) & (part_of < start[:, None] + m_part)
    assert bool((out.weights[~inside] == 0).all())


def test_block_weights_are_constant_per_block_and_half_or_whole():
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 16, 16).contiguous()  # flat images
    y = torch.arange(8)
    out = CoMixup(m_part=8, generator=seeded(2)).mix_with_saliency(
        x, y, blob_saliency(8, 16, 16, seed=2), num_classes=8
    )
    vals = set(out.block_weights.unique().tolist())
    assert vals <= {0.0, 0.5, 1.0}
    blocks = out.inputs[:, 0].reshape(8, 4, 4, 4, 4)  # 4x4 blocks of 4x4 px
    assert torch.equal(blocks, blocks[:, :, :1, :, :1].expand_as(blocks))


def test_soft_targets_merge_inputs_of_the_same_class():
    x, _ = make_batch(b=8, h=16, w=16)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = CoMixup(m_part=8, generator=seeded(3)).mix_with_saliency(
        x, y, blob_saliency(8, 16, 16, seed=3), num_classes=4
    )
    expected = out.weights @ F.one_hot(y, 4).float()
    torch.testing.assert_close(out.soft_targets, expected / expected.sum(1, keepdim=True))


def test_two_way_summary():
    x, _ = make_batch(b=8, h=16, w=16)
    y = torch.arange(8)
    out = CoMixup(m_part=8, generator=seeded(4)).mix_with_saliency(
        x, y, blob_saliency(8, 16, 16, seed=4), num_classes=8
    )
    assert torch.equal(out.y_a, y) and torch.equal(out.y_b, y[out.index])
    assert bool((out.index != torch.arange(8)).all())
    w_a = out.weights.diagonal()
    w_b = out.weights[torch.arange(8), out.index]
    torch.testing.assert_close(out.lam, w_a / (w_a + w_b))
    # outputs are ordered by a maximum-mass matching: no swap of two outputs does better
    wts = out.weights
    for i, j in itertools.combinations(range(8), 2):
        assert wts[i, i] + wts[j, j] >= wts[i, j] + wts[j, i] - 1e-6


@pytest.mark.parametrize(
    "shape,n_labels",
    [
        ((2, 2), 3),
        ((3, 3), 3),
        ((2, 4), 4),
        ((4, 4), 2),
        ((3, 2), 5),
        ((2, 3), 6),
        ((1, 3), 4),
        ((4, 1), 3),
        ((3, 3), 1),
    ],
)
@pytest.mark.parametrize("table", ["random", "potts_with_half_labels"])
def test_grid_dp_is_exact_against_brute_force(shape, n_labels, table):
    rng = np.random.default_rng(n_labels)
    h, w = shape
    unary = rng.normal(size=(5, h, w, n_labels))
    if table == "random":
        pair = rng.random((n_labels, n_labels))
    else:  # Potts, with a label at 0.25 beta from labels 0 and 1 (Co-Mixup's structure)
        pair = 0.7 * (1 - np.eye(n_labels))
        if n_labels > 2:
            pair[-1, :2] = pair[:2, -1] = 0.175
    labels = solve_grid(unary, pair)
    assert labels.shape == (5, h, w) and labels.min() >= 0 and labels.max() < n_labels
    every = np.array(list(itertools.product(range(n_labels), repeat=h * w))).reshape(-1, h, w)
    for i in range(5):
        best = grid_energy(np.repeat(unary[i : i + 1], len(every), 0), pair, every).min()
        assert grid_energy(unary[i : i + 1], pair, labels[i : i + 1])[0] == pytest.approx(best, abs=1e-9)


def test_grid_dp_breaks_ties_towards_the_smallest_label():
    # all labelings cost the same: the DP must still return a valid (the all-zero) one
    labels = solve_grid(np.zeros((2, 3, 3, 4)), np.zeros((4, 4)))
    assert np.array_equal(labels, np.zeros((2, 3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="pair must be"):
        solve_grid(np.zeros((1, 2, 2, 3)), np.zeros((2, 2)))


def test_objective_matches_its_definition():
    g = seeded(5)
    p, o, n, m = 2, 3, 3, 2
    cost = torch.randn(p, n, m, m, generator=g, dtype=torch.float64)
    z = F.one_hot(torch.randint(0, n, (p, o, m, m), generator=g), n).double()
    z[0, 0, 0, 0] = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)  # a half-half block
    beta, gamma, thres = 0.3, 0.7, 1.5
    for q in range(p):
        data = sum(
            float(cost[q, i, r, c] * z[q, k, r, c, i])
            for k in range(o)
            for r in range(m)
            for c in range(m)
            for i in range(n)
        )
        smooth = 0.0
        for k in range(o):
            for r, c in itertools.product(range(m), range(m)):
                if r + 1 < m:
                    smooth += float(((z[q, k, r, c] - z[q, k, r + 1, c]) ** 2).sum())
                if c + 1 < m:
                    smooth += float(((z[q, k, r, c] - z[q, k, r, c + 1]) ** 2).sum())
        counts = z[q].sum((1, 2))  # (O, n)
        plain = sum(float(counts[k] @ counts[k2]) for k in range(o) for k2 in range(o) if k != k2)
        others = counts.sum(0) - counts
        thresholded = float(((others > thres) * others * counts).sum())
        got = comixup_objective(cost, z, beta, gamma)[q].item()
        assert got == pytest.approx(data + beta / 2 * smooth + gamma * plain)
        got_t = comixup_objective(cost, z, beta, gamma, thres)[q].item()
        assert got_t == pytest.approx(data + beta / 2 * smooth + gamma * thresholded)


def test_solver_descends_from_its_random_start():
    sal = F.adaptive_avg_pool2d(blob_saliency(20, 16, 16, seed=6)[:, None], 4)[:, 0]
    mixer = CoMixup(generator=seeded(6))
    z = mixer.solve(sal.view(1, 20, 4, 4), torch.zeros(1, 20, 20))
    beta, gamma = 0.32 / 16, 1.0 / 16
    start = F.one_hot(torch.randint(0, 20, (1, 20, 4, 4), generator=seeded(0)), 20).double()
    cost = mixer._last_cost
    assert comixup_objective(cost, z, beta, gamma) < comixup_objective(cost, start, beta, gamma)
    assert torch.allclose(z.sum(-1), torch.ones(1, 20, 4, 4, dtype=torch.float64))


def test_monotone_sweeps_never_increase_the_objective(monkeypatch):
    from mixbench.mixers import comixup as module

    seen = []
    original = module._objective
    monkeypatch.setattr(module, "_objective", lambda *a: seen.append(original(*a)) or seen[-1])
    sal = F.adaptive_avg_pool2d(blob_saliency(40, 16, 16, seed=8)[:, None], 4)[:, 0]
    CoMixup(generator=seeded(8)).solve(sal.view(2, 20, 4, 4), torch.rand(2, 20, 20))
    seen = np.stack(seen)  # (sweeps + 1, partitions)
    assert len(seen) >= 3
    assert bool((np.diff(seen, axis=0) <= 1e-12).all()), seen


def test_importing_the_mixers_does_not_import_numba():
    code = (
        "import sys, mixbench.mixers, mixbench.mixers.comixup; "
        "sys.exit('numba imported' if 'numba' in sys.modules else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_reproducible_and_seed_dependent():
    x, y = make_batch(b=8, h=16, w=16)
    sal = blob_saliency(8, 16, 16, seed=7)
    outs = [
        CoMixup(m_part=8, generator=seeded(s)).mix_with_saliency(x, y, sal, num_classes=5) for s in (0, 0, 1)
    ]
    assert_outputs_equal(outs[0], outs[1], "same seed")
    assert not torch.equal(outs[0].inputs, outs[2].inputs)


def test_batch_of_one_dtypes_and_channels_last():
    check_batch_size_one(CoMixup(), model=tiny_classifier())
    check_dtypes_and_formats(CoMixup(m_part=3), mask_identity=False, model=tiny_classifier(), h=16, w=16)


def test_random_grid_side():
    mixer = CoMixup(m_block_num=-1, generator=seeded(0))
    assert {mixer.sample_grid(32, 32) for _ in range(60)} == {2, 4, 8}
    x, _ = make_batch(b=6, h=32, w=32)
    y = torch.arange(6)
    out = mixer.mix_with_saliency(x, y, blob_saliency(6, 32, 32), num_classes=6)
    check_convex_combination(out, x)


class NoClasses(nn.Module):
    def logits(self, x, stage_hook=None):
        return x.mean((2, 3))


def test_errors_are_explained():
    x, y = make_batch(b=4, h=16, w=16)
    with pytest.raises(ValueError, match="num_classes"):
        CoMixup()(x, y, model=NoClasses())
    with pytest.raises(ValueError, match="needs the model"):
        CoMixup()(x, y)
    with pytest.raises(ValueError, match="m_part"):
        CoMixup(m_part=1)
    with pytest.raises(ValueError, match="m_block_num"):
        CoMixup(m_block_num=16)
    with pytest.raises(ValueError, match="thres_type"):
        CoMixup(thres_type="medium")
    with pytest.raises(ValueError, match="saliency must be"):
        CoMixup().mix_with_saliency(x, y, torch.rand(4, 8, 8), num_classes=5)
    with pytest.raises(ValueError, match="num_classes"):
        CoMixup().mix_with_saliency(x, y, torch.rand(4, 16, 16), num_classes=2)
    with pytest.raises(ValueError, match="does not fit"):
        CoMixup(m_block_num=8)(*make_batch(b=4, h=4, w=4), model=tiny_classifier())


def test_real_resnet_training_step():
    x, out = real_resnet_step({"type": "CoMixup", "m_part": 4}, b=8)
    check_convex_combination(out, x)


def test_two_epochs_on_digits_through_train_py(tmp_path):
    result = train_on_digits(tmp_path, "comixup")
    assert result["run"]["method"] == "Co-Mixup"


@requires_cuda
def test_cpu_and_cuda_agree_for_the_same_saliency():
    x, y = make_batch(b=8, h=16, w=16)
    sal = blob_saliency(8, 16, 16)
    outs = [
        CoMixup(m_part=4, generator=seeded(0)).mix_with_saliency(x.to(d), y.to(d), sal.to(d), num_classes=5)
        for d in ("cpu", "cuda")
    ]
    assert_outputs_equal(outs[0], outs[1], "CPU vs CUDA")


def test_clean_loss_is_clean_lam_times_the_clean_cross_entropy():
    """clean_loss = clean_lam * CE(f(x), y) of a train-mode pass: the official recipe's
    clean term, 2 clean_lam CE / K next to a BCE of about CE / K (Co-Mixup main.py:295, 336),
    is clean_lam 2 here relative to the mixed cross-entropy (docs/protocol.md)."""
    x, y = make_batch(b=8, h=16, w=16)
    for clean_lam in (1.0, 2.0):
        model = tiny_classifier()
        out = CoMixup(m_part=4, clean_lam=clean_lam, generator=seeded(0))(x, y, model=model)
        with torch.no_grad():
            reference = F.cross_entropy(tiny_classifier().train()(x), y)
        torch.testing.assert_close(out.extra_losses["clean_loss"].detach(), clean_lam * reference)
