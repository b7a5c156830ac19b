"""PuzzleMix: contract, block-constant mask, transport as a block permutation, the exact
identity with transport, side-effect-free saliency, exact graph-cut solver (brute force),
the folded energy against the paper's form, reproducibility, errors, a real ResNet step, and
2 epochs on digits through tools/train.py."""

import itertools

import numpy as np
import pytest
import torch
from mbtest.mixers import (
    TinyClassifier,
    assert_outputs_equal,
    check_batch_size_one,
    check_dtypes_and_formats,
    check_mask_identity,
    check_output,
    check_reproducible,
    make_batch,
    real_resnet_step,
    requires_cuda,
    seeded,
)
from mbtest.training import train_on_digits
from torch import nn

from mixbench.mixers import PuzzleMix
from mixbench.mixers._graphcut import chain_grid_energy, solve_chain_grid
from mixbench.mixers._saliency import input_gradient_saliency


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return TinyClassifier()


def check_transport_identity(out, x):
    """inputs == mask * T_a(x) + (1 - mask) * T_b(x[index]) exactly, lam == mask mean."""
    x_a, x_b = out.sources(x)
    m = out.mask.to(x.dtype)
    assert torch.equal(out.inputs, m * x_a + (1 - m) * x_b)
    assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))


def cells(x, grid):
    """(B, N, C*bh*bw) cells of a grid partition, row-major."""
    b, c, h, w = x.shape
    th, tw = grid
    return x.reshape(b, c, th, h // th, tw, w // tw).permute(0, 2, 4, 1, 3, 5).reshape(b, th * tw, -1)


@pytest.mark.parametrize(
    "lam_mode,pairing", [("batch", "random"), ("elem", "random"), ("pair", "reverse"), ("batch", "roll")]
)
def test_contract_and_transport_identity(lam_mode, pairing):
    x, y = make_batch(b=6, h=16, w=16)
    mixer = PuzzleMix(block_num=4, lam_mode=lam_mode, pairing=pairing, generator=seeded(0))
    out = check_output(mixer, x, y, model=tiny_classifier(), mask_method=True)
    check_transport_identity(out, x)


@pytest.mark.parametrize("seed", range(4))
def test_mask_is_constant_on_blocks_with_label_values(seed):
    x, y = make_batch(b=6, h=32, w=32, seed=seed)
    out = PuzzleMix(generator=seeded(seed))(x, y, model=tiny_classifier(seed))
    values = set(out.mask.unique().tolist())
    assert values <= {0.0, 0.5, 1.0}
    # the mask is the nearest upsampling of its grid for one of the sides 2, 4, 8, 16
    ok = False
    for side in (2, 4, 8, 16):
        grid = out.mask[:, :, :: 32 // side, :: 32 // side]
        if torch.equal(grid.repeat_interleave(32 // side, 2).repeat_interleave(32 // side, 3), out.mask):
            ok = True
            break
    assert ok, "mask is not constant on the blocks of any grid side 2, 4, 8, 16"


def test_transport_permutes_cells_and_keeps_pixel_values():
    x, y = make_batch(b=8, h=32, w=32, seed=3)
    mixer = PuzzleMix(generator=seeded(3))
    for _ in range(4):  # several grid sides
        out = mixer(x, y, model=tiny_classifier())
        n = out.transport_grid[0] * out.transport_grid[1]
        for perm in (out.perm_a, out.perm_b):
            assert torch.equal(perm.sort(1).values, torch.arange(n).expand_as(perm))
        x_a, x_b = out.sources(x)
        for moved, src in ((x_a, x), (x_b, x[out.index])):
            assert torch.equal(
                cells(moved, out.transport_grid).sort(1).values, cells(src, out.transport_grid).sort(1).values
            )
        check_transport_identity(out, x)


def test_transport_moves_salient_cell_into_kept_region():
    """A single salient cell outside the kept region is moved inside it."""
    x, y = make_batch(b=2, h=8, w=8)
    sal = torch.zeros(2, 8, 8)
    sal[0, 0:2, 0:2] = 10.0  # salient top-left cell of image 0
    mixer = PuzzleMix(
        block_num=(2, 3), t_size=2, eta=0.0, beta=0.0, gamma=0.0, pairing="reverse", generator=seeded(0)
    )
    out = mixer.mix_with_saliency(x, y, sal)  # 4x4 grid of 2x2 cells
    keep = out.mask[0, 0, ::2, ::2].reshape(-1) > 0
    src_cells = out.perm_a[0][keep]
    assert 0 in src_cells.tolist(), "the salient cell 0 of image 0 is not in its kept region"


def test_without_transport_the_plain_mask_identity_holds():
    x, y = make_batch(b=6, h=16, w=16)
    out = check_output(
        PuzzleMix(transport=False, generator=seeded(1)), x, y, model=tiny_classifier(), mask_method=True
    )
    check_mask_identity(out, x)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_classes = 4
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.frozen_bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 4)

    def logits(self, x, stage_hook=None):
        return self.fc(self.drop(self.frozen_bn(self.bn(self.conv(x))).mean((2, 3))))


def test_saliency_pass_leaves_no_gradients_bn_statistics_or_mode_changes():
    torch.manual_seed(0)
    model = BNNet().train()
    model.frozen_bn.eval()  # a submodule deliberately kept in eval mode
    model.fc.weight.grad = torch.ones_like(model.fc.weight)  # an existing gradient
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = make_batch(b=6, h=16, w=16, num_classes=4)
    out = PuzzleMix(generator=seeded(0))(x, y, model=model)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()), (
        "BN running statistics (or parameters) changed"
    )
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert model.training and model.bn.training and model.drop.training
    assert not model.frozen_bn.training
    assert torch.isfinite(out.inputs).all()


def test_saliency_is_the_channel_rms_of_the_input_gradient():
    model = tiny_classifier().eval()
    x, y = make_batch(b=3, h=8, w=8)
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model.logits(xr), y).backward()
    expected = xr.grad.pow(2).mean(1).sqrt()
    torch.testing.assert_close(input_gradient_saliency(model, x, y), expected)


@pytest.mark.parametrize("backend", ["scipy", "pymaxflow"])
@pytest.mark.parametrize("n_labels,shape", [(2, (3, 3)), (3, (2, 3)), (3, (3, 3)), (4, (2, 2))])
def test_solver_is_exact_against_brute_force(n_labels, shape, backend):
    if backend == "pymaxflow":
        pytest.importorskip("maxflow", reason="optional PyMaxflow backend not installed")
    rng = np.random.default_rng(n_labels)
    b, (gh, gw) = 6, shape
    unary = rng.normal(size=(b, gh, gw, n_labels))
    w_v, w_h = rng.random((b, gh - 1, gw)), rng.random((b, gh, gw - 1))
    labels = solve_chain_grid(unary, w_v, w_h, backend=backend)
    every = np.array(list(itertools.product(range(n_labels), repeat=gh * gw))).reshape(-1, gh, gw)
    for i in range(b):

        def rep(a, i=i):
            return np.repeat(a[i : i + 1], len(every), 0)

        best = chain_grid_energy(rep(unary), rep(w_v), rep(w_h), every).min()
        got = chain_grid_energy(unary[i : i + 1], w_v[i : i + 1], w_h[i : i + 1], labels[i : i + 1])[0]
        assert got == pytest.approx(best, abs=1e-7)


def test_puzzlemix_mask_is_the_global_minimum_of_its_energy():
    """On a 2x2 grid with 3 labels (81 masks) and a 4x4 binary grid (65536 masks)."""
    x, y = make_batch(b=4, h=16, w=16)
    sal = torch.rand(4, 16, 16, generator=seeded(2)) ** 3
    index, lam = torch.tensor([2, 3, 0, 1]), torch.tensor([0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    for n_labels, g in ((3, 2), (2, 4)):
        mixer = PuzzleMix(n_labels=n_labels)
        unary, w_v, w_h, _ = mixer.graph_terms(x, sal, index, lam, g)
        labels = solve_chain_grid(unary, w_v, w_h)
        every = np.array(list(itertools.product(range(n_labels), repeat=g * g))).reshape(-1, g, g)
        for i in range(4):

            def rep(a, i=i, every=every):
                return np.repeat(a[i : i + 1], len(every), 0)

            best = chain_grid_energy(rep(unary), rep(w_v), rep(w_h), every).min()
            got = chain_grid_energy(unary[i : i + 1], w_v[i : i + 1], w_h[i : i + 1], labels[i : i + 1])[0]
            assert got == pytest.approx(best, abs=1e-9)


def test_folded_energy_equals_the_papers_pairwise_form_up_to_a_constant():
    """For binary masks, E(z) from graph_terms minus the direct form with the four source
    combinations (the paper's / official test's formula) is the same for every z."""
    g = 4
    x, y = make_batch(b=2, h=16, w=16)
    sal = torch.rand(2, 16, 16, generator=seeded(4))
    index, lam = torch.tensor([1, 0]), torch.tensor([0.4, 0.4], dtype=torch.float64)
    mixer = PuzzleMix(n_labels=2)
    unary, w_v, w_h, sal_norm = mixer.graph_terms(x, sal, index, lam, g)
    # the direct form, built independently
    mean, std = mixer._norm_stats(x)
    img = torch.nn.functional.avg_pool2d(x * std + mean, 4).double()  # 4x4 cells = blocks
    beta = 1.2 / g / 16
    src = {1: img, 0: img[index]}
    pen_v = {
        (s, t): beta * 0.5 * (src[s][:, :, :-1] - src[t][:, :, 1:]).abs().mean(1).numpy()
        for s in (0, 1)
        for t in (0, 1)
    }
    pen_h = {
        (s, t): beta * 0.5 * (src[s][..., :-1] - src[t][..., 1:]).abs().mean(1).numpy()
        for s in (0, 1)
        for t in (0, 1)
    }
    u1, u2 = sal_norm.numpy(), sal_norm[index].numpy()
    prior = -0.2 / g**2 * np.log(np.stack([1 - lam.numpy(), lam.numpy()], 1) + 1e-8)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(20):
        z = rng.integers(0, 2, size=(2, g, g))
        e = ((1 - z) * u1 + z * u2).sum((1, 2)) + np.take_along_axis(prior, z.reshape(2, -1), 1).sum(1)
        for pen, a, b in ((pen_v, z[:, :-1], z[:, 1:]), (pen_h, z[:, :, :-1], z[:, :, 1:])):
            e += (
                pen[1, 1] * a * b
                + (pen[0, 1] + beta) * (1 - a) * b
                + (pen[1, 0] + beta) * a * (1 - b)
                + pen[0, 0] * (1 - a) * (1 - b)
            ).sum((1, 2))
        diffs.append(chain_grid_energy(unary, w_v, w_h, z) - e)
    diffs = np.array(diffs)
    np.testing.assert_allclose(diffs, np.broadcast_to(diffs[:1], diffs.shape), atol=1e-12)


def test_both_min_cut_backends_give_the_same_masks():
    pytest.importorskip("maxflow", reason="optional PyMaxflow backend not installed")
    x, y = make_batch(b=8, h=32, w=32)
    sal = torch.rand(8, 32, 32, generator=seeded(9)) ** 4
    outs = [
        PuzzleMix(solver=s, generator=seeded(3)).mix_with_saliency(x, y, sal) for s in ("scipy", "pymaxflow")
    ]
    assert_outputs_equal(outs[0], outs[1], "scipy vs pymaxflow")


def test_reproducible_and_batch_of_one():
    x, y = make_batch(b=6, h=16, w=16)
    check_reproducible(PuzzleMix(), x, y, model=tiny_classifier())
    check_batch_size_one(PuzzleMix(), model=tiny_classifier())


def test_dtypes_and_channels_last():
    mixer = PuzzleMix(block_num=4)
    check_dtypes_and_formats(mixer, mask_identity=False, model=tiny_classifier(), h=16, w=16)
    for dtype in (torch.float16, torch.bfloat16):
        x, y = make_batch(dtype=dtype, h=16, w=16, channels_last=True)
        mixer.generator = seeded(2)
        check_transport_identity(mixer(x, y, model=tiny_classifier().to(dtype)), x)


def test_grid_sides_follow_block_num_and_image_size():
    x, y = make_batch(b=4, h=32, w=32)
    mixer = PuzzleMix(generator=seeded(0))
    sides = {mixer.sample_grid(32, 32) for _ in range(200)}
    assert sides == {2, 4, 8, 16}
    assert {mixer.sample_grid(28, 28) for _ in range(100)} == {2, 4}  # 8, 16 do not divide 28
    out = mixer.mix_with_saliency(*make_batch(b=3, h=28, w=20), torch.rand(3, 28, 20))
    check_transport_identity(out, make_batch(b=3, h=28, w=20)[0])


def test_all_zero_saliency_is_handled():
    x, y = make_batch(b=4, h=16, w=16)
    out = PuzzleMix(generator=seeded(0)).mix_with_saliency(x, y, torch.zeros(4, 16, 16))
    assert torch.isfinite(out.inputs).all()
    check_transport_identity(out, x)


def test_errors_are_explained():
    x, y = make_batch(b=2, h=15, w=15)
    with pytest.raises(ValueError, match="divisible"):
        PuzzleMix()(x, y, model=tiny_classifier())
    with pytest.raises(ValueError, match="needs the model"):
        PuzzleMix()(*make_batch())
    with pytest.raises(ValueError, match="block_num"):
        PuzzleMix(block_num=1)
    with pytest.raises(ValueError, match="n_labels"):
        PuzzleMix(n_labels=1)
    with pytest.raises(ValueError, match="solver"):
        PuzzleMix(solver="gco")
    with pytest.raises(ValueError, match="both mean and std"):
        PuzzleMix(mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="saliency must be"):
        PuzzleMix().mix_with_saliency(*make_batch(b=2), torch.rand(2, 8, 8))


def test_real_resnet_training_step():
    x, out = real_resnet_step({"type": "PuzzleMix"}, b=4)
    check_transport_identity(out, x)


def test_two_epochs_on_digits_through_train_py(tmp_path):
    result = train_on_digits(tmp_path, "puzzlemix")
    assert result["run"]["method"] == "PuzzleMix"


@requires_cuda
def test_cpu_and_cuda_agree_for_the_same_saliency():
    x, y = make_batch(b=6, h=32, w=32)
    sal = torch.rand(6, 32, 32, generator=seeded(5))
    outs = []
    for device in ("cpu", "cuda"):
        mixer = PuzzleMix(generator=seeded(0))
        outs.append(mixer.mix_with_saliency(x.to(device), y.to(device), sal.to(device)))
    assert_outputs_equal(outs[0], outs[1], "CPU vs CUDA")
