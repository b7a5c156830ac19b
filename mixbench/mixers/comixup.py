"""Co-Mixup (Kim, Choo, Jeong, Song, "Co-Mixup: Saliency Guided Joint Mixup with Supermodular
Diversity", ICLR 2021; official code github.com/snu-mllab/Co-Mixup).

The batch is split into partitions of ``m_part`` inputs; each partition produces as many
outputs. Every output ``o`` is a labeling of an ``m x m`` block grid (``m = m_block_num``)
by a per-block weight vector ``z_o(p)`` over the partition's inputs (one input, or half and
half of two inputs), and

    image:  x~_o = sum_i up(z_o)_i (.) x_i           (a per-pixel convex combination)
    label:  y~_o = sum_i mean_pixels(up(z_o)_i) y_i   (``soft_targets``; rows sum to 1)

so an input's weight in the label is exactly its pixel mass in the image. The labeling
minimises

    f(z) = sum_{o,p} c(p)^T z_o(p) + beta/2 sum_o sum_{p~q} ||z_o(p) - z_o(q)||^2
           + gamma sum_o n_o^T [A n_{-o} > tau] (A n_{-o})

with ``c_i(p) = -s_i(p) - eta log(pi_i)`` (block-pooled, sum-normalised input-gradient
saliency ``s``; Dirichlet(alpha) prior ``pi`` per partition), ``n_o`` the per-input block mass
of output ``o``, ``n_{-o}`` that of the other outputs, ``A = (1-omega) I + omega A_dist``
the input compatibility (``A_dist``: L1 distance between saliency peaks) and
``tau = m_thres * m^2``; ``beta, gamma, eta`` are divided by ``m^2``. As in the official
code, it is minimised by block-coordinate descent over outputs (``m_niter`` sweeps, stopping
when the non-thresholded objective changes by < 1e-6 relatively), each output solving its
modular subproblem (the diversity term linearised into per-input costs
``2 gamma [A n_{-o} > tau] A n_{-o}``) with Potts smoothness and, after the first sweep, the
"half-half" labels of the inputs it already uses (cost 0.25 beta to their components).
Where the official code runs gco's alpha-beta swap on all ``m_part`` labels, we solve each
subproblem *exactly* over a candidate set (the two inputs it uses most and the others with
the lowest capped whole-grid cost, ``n_candidates`` in all, plus the half-half label of the
two most used) by a row dynamic program (:mod:`mixbench.mixers._grid_dp`). Each sweep over
the outputs of all partitions is one call of a numba-compiled kernel
(:func:`mixbench.mixers._comixup_sweep.sweep`, imported on the first solve; compiled once
per machine and cached, a few seconds on the first call). With ``monotone=True`` (default) an output's new labeling is kept only
if it lowers the plain objective (the one the official stopping rule measures), so every
sweep decreases it; the official code accepts every move.

Clean-input regularisation (``clean_lam``): the official code trains on
``2 clean_lam CE(f(x), y) / K`` of the clean batch next to a BCE loss averaged over the K
classes (about CE/K), and takes the saliency from that same train-mode pass. We take the
saliency from a train-mode pass too, with BatchNorm statistics frozen (momentum 0, counters
restored) and gradients taken with respect to the input only, and return
``clean_loss = clean_lam * CE(f(x), y)`` (with its graph) in the output's
``extra_losses``: the classifier adds it to the loss (the MixOutput contract), which
reproduces the recipe. ``clean_lam = 0``: eval-mode
saliency pass, no clean loss.

Two-way summary (for code that reads ``y_a``/``y_b``/``lam``; the loss uses
``soft_targets``): outputs are ordered by a maximum-mass matching so that output ``i``
contains input ``i`` (``y_a = y``) with mass ``w_i``; ``index[i]`` is the input of largest
remaining mass found by a second matching (a permutation, never ``i``), ``y_b = y[index]``
and ``lam = w_i / (w_i + w_index[i])``.

Published defaults (official README, CIFAR-100 PreActResNet-18): alpha 2 (Dirichlet
prior), m_part 20, m_block_num 4, m_beta 0.32, m_gamma 1.0, m_thres 0.83, m_eta 0.05,
m_omega 0.001, m_niter 4, hard thresholding, set_resolve on, clean_lam 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ._saliency import input_gradient_saliency
from .base import BaseMixer, MixOutput
from .checks import check_flag, check_inputs
from .kernels import match_format


@dataclass
class CoMixupOutput(MixOutput):
    """:class:`MixOutput` plus Co-Mixup's labeling and the clean-input loss.

    ``weights``: (B, B) float32, ``weights[o, i]`` = pixel mass of input ``i`` in output ``o``
    (rows sum to 1; zero outside the output's partition). ``block_weights``: (B, m, m, P)
    per-block weights over the ``P`` inputs of the output's partition (input
    ``partition_start[o] + k`` for entry ``k``) and
    ``partition_start`` (B,) the index of that partition's first input. ``extra_losses``:
    ``{"clean_loss": clean_lam * CE(f(x), y)}`` with its graph (empty when ``clean_lam`` is 0).
    """

    weights: Tensor | None = None
    block_weights: Tensor | None = None
    partition_start: Tensor | None = None


def comixup_objective(
    cost: Tensor, z: Tensor, beta: float, gamma: float, thres: float | None = None
) -> Tensor:
    """Objective of labelings ``z`` (P, O, m, m, n) for ``cost`` (P, n, m, m), shape (P,).

    ``beta``, ``gamma`` (and ``thres``, in blocks) are the normalised values; with
    ``thres=None`` the diversity term is the plain ``gamma (||sum_o n_o||^2 - sum_o ||n_o||^2)``
    of the official ``obj_fn``, else the thresholded form of ``obj_fn_thres``.
    """
    p = z.shape[0]
    data = (cost.permute(0, 2, 3, 1)[:, None] * z).reshape(p, -1).sum(1)
    smooth = ((z[:, :, :-1] - z[:, :, 1:]) ** 2).reshape(p, -1).sum(1) + (
        (z[:, :, :, :-1] - z[:, :, :, 1:]) ** 2
    ).reshape(p, -1).sum(1)
    own = z.sum((2, 3))  # (P, O, n)
    total = own.sum(1, keepdim=True)
    if thres is None:
        div = (total[:, 0] ** 2).sum(1) - (own**2).sum((1, 2))
    else:
        others = total - own
        div = ((others > thres).to(z.dtype) * others * own).sum((1, 2))
    return data + beta / 2 * smooth + gamma * div


def _objective(cost: np.ndarray, z: np.ndarray, beta: float, gamma: float) -> np.ndarray:
    """NumPy :func:`comixup_objective` without threshold (the stopping rule's objective)."""
    return comixup_objective(torch.from_numpy(cost), torch.from_numpy(z), beta, gamma).numpy()


class CoMixup(BaseMixer):
    """Batch-level mixing of several inputs per output with a supermodular diversity term.

    Args:
        alpha: Dirichlet(alpha) prior over the inputs of a partition, default 2.0.
        m_part: partition size (inputs and outputs per partition), default 20.
        m_block_num: labeling grid side ``m`` in 1..8, default 4 (-1: 2, 4 or 8 at random;
            the official -1 also draws 16, which the exact solver does not support).
        m_beta: label smoothness, default 0.32.
        m_gamma: diversity weight, default 1.0.
        m_thres: diversity threshold as a fraction of the ``m^2`` blocks, default 0.83.
        m_eta: prior weight, default 0.05.
        m_omega: weight of the saliency-peak distance in the compatibility A, default 0.001.
        m_niter: coordinate-descent sweeps, default 4.
        thres_type: ``hard`` (default) or ``soft`` thresholding of the diversity penalty.
        set_resolve: make identical outputs differ (official post-processing), default True.
        clean_lam: weight of the clean-input loss ``extra_losses["clean_loss"]``, default 1.0.
        n_candidates: inputs considered per output by the exact subproblem solver, default 5
            (from the second sweep on, the two it uses most among them, plus their
            half-half label); more candidates: lower objective, slower.
        monotone: keep a move only if it lowers the plain objective, default True.
        prob, generator: see :class:`~mixbench.mixers.base.BaseMixer` (the prior, the
            initial labeling and the grid side are drawn from ``generator``).

    Call as ``mixer(x, y, model=clf)``; ``clf.num_classes`` sizes ``soft_targets``.
    """

    needs_model = True

    def __init__(
        self,
        alpha: float = 2.0,
        m_part: int = 20,
        m_block_num: int = 4,
        m_beta: float = 0.32,
        m_gamma: float = 1.0,
        m_thres: float = 0.83,
        m_eta: float = 0.05,
        m_omega: float = 0.001,
        m_niter: int = 4,
        thres_type: str = "hard",
        set_resolve: bool = True,
        clean_lam: float = 1.0,
        n_candidates: int = 5,
        monotone: bool = True,
        prob: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__(alpha=alpha, prob=prob, generator=generator)
        if int(m_part) < 2:
            raise ValueError(f"m_part must be >= 2 (inputs mixed per partition), got {m_part}")
        if not (1 <= int(m_block_num) <= 8 or int(m_block_num) == -1):
            raise ValueError(
                f"m_block_num must be in 1..8 (the exact subproblem solver's state "
                f"grows as 4**m) or -1 (random 2, 4 or 8), got {m_block_num}"
            )
        if thres_type not in ("hard", "soft"):
            raise ValueError(f"thres_type must be 'hard' or 'soft', got {thres_type!r}")
        for name, val in (
            ("m_beta", m_beta),
            ("m_gamma", m_gamma),
            ("m_eta", m_eta),
            ("m_thres", m_thres),
            ("clean_lam", clean_lam),
        ):
            if not float(val) >= 0:
                raise ValueError(f"{name} must be >= 0, got {val}")
        if not 0 <= float(m_omega) <= 1:
            raise ValueError(f"m_omega must lie in [0, 1], got {m_omega}")
        if int(m_niter) < 1 or int(n_candidates) < 2:
            raise ValueError(f"m_niter must be >= 1 and n_candidates >= 2, got {m_niter}, {n_candidates}")
        self.m_part, self.m_block_num = int(m_part), int(m_block_num)
        self.m_beta, self.m_gamma, self.m_thres = float(m_beta), float(m_gamma), float(m_thres)
        self.m_eta, self.m_omega, self.m_niter = float(m_eta), float(m_omega), int(m_niter)
        self.thres_type, self.set_resolve = thres_type, check_flag(set_resolve, "set_resolve")
        self.clean_lam, self.n_candidates = float(clean_lam), int(n_candidates)
        self.monotone = check_flag(monotone, "monotone")

    # -- the labeling -------------------------------------------------------------------
    def sample_grid(self, height: int, width: int) -> int:
        if self.m_block_num > 0:
            m = self.m_block_num
        else:
            m = 2 ** int(torch.randint(1, 4, (1,), generator=self.generator))
        if height < m or width < m:
            raise ValueError(
                f"Co-Mixup's {m}x{m} block grid does not fit {height}x{width} images; lower m_block_num"
            )
        return m

    def solve(self, sal_blocks: Tensor, compat: Tensor) -> Tensor:
        """Labelings (P, n, m, m, n) float64 of ``P`` partitions of ``n`` inputs.

        ``sal_blocks``: (P, n, m, m) block-pooled saliency; ``compat``: (P, n, n) distance
        between saliency peaks (``A_dist``). Draws the Dirichlet prior and the random initial
        labeling from the generator. Runs on the CPU (tiny arrays, many sequential steps:
        compiled with numba).
        """
        from ._comixup_sweep import sweep  # imports numba: only when Co-Mixup is used

        p, n, m, _ = sal_blocks.shape
        blocks = m * m
        beta, gamma, eta = self.m_beta / blocks, self.m_gamma / blocks, self.m_eta / blocks
        thres = self.m_thres * blocks
        sal = sal_blocks.detach().double().cpu().numpy()
        total = sal.reshape(p, n, -1).sum(-1)[..., None, None]
        sal = np.where(total > 0, sal / np.maximum(total, 1e-30), 1.0 / blocks)
        prior = _dirichlet(self.alpha, p, n, self.generator)
        cost = -sal - eta * np.log(prior + 1e-8)[..., None, None]  # (P, n, m, m)
        dist = compat.detach().double().cpu().numpy()
        dist = dist / np.maximum(dist.sum((1, 2), keepdims=True), 1e-30) * n
        a_mat = (1 - self.m_omega) * np.eye(n) + self.m_omega * dist

        init = torch.randint(0, n, (p, n, m, m), generator=self.generator).numpy()
        z = np.eye(n)[init]  # (P, O, m, m, n)
        counts = z.sum((2, 3))  # (P, O, n)
        unary_base = np.ascontiguousarray(cost.transpose(0, 2, 3, 1))  # (P, m, m, n)
        add_cost = np.zeros((p, n, n))
        active = np.ones(p, dtype=bool)
        loss_prev = _objective(cost, z, beta, gamma)
        for it in range(self.m_niter):
            sweep(
                z,
                counts,
                unary_base,
                cost,
                a_mat,
                add_cost,
                active,
                beta,
                gamma,
                thres,
                self.thres_type == "hard",
                self.n_candidates,
                it > 0,
                self.monotone,
            )
            if it == self.m_niter - 2 and self.set_resolve:
                add_cost = _resolve_identical(counts > 0)
            loss = _objective(cost, z, beta, gamma)
            active &= np.abs(loss_prev - loss) / np.maximum(np.abs(loss), 1e-30) >= 1e-6
            loss_prev = loss
            if not active.any():
                break
        self._last_cost = torch.from_numpy(cost)
        return torch.from_numpy(z)

    # -- mixing --------------------------------------------------------------------------
    def mix(self, x: Tensor, y: Tensor, model=None) -> CoMixupOutput:
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ValueError("Co-Mixup needs model.num_classes (an int) to build soft targets")
        saliency, clean_loss = _saliency_and_clean_loss(model, x, y, self.clean_lam)
        return self.mix_with_saliency(x, y, saliency, num_classes, clean_loss)

    def mix_with_saliency(
        self, x: Tensor, y: Tensor, saliency: Tensor, num_classes: int, clean_loss: Tensor | None = None
    ) -> CoMixupOutput:
        """Co-Mixup given a (B, H, W) saliency map (what :meth:`mix` computes from the model)."""
        check_inputs(x, y)
        b, _, h, w = x.shape
        if saliency.shape != (b, h, w):
            raise ValueError(f"saliency must be (B, H, W) = {(b, h, w)}, got {tuple(saliency.shape)}")
        if int(y.max()) >= num_classes:
            raise ValueError(f"label {int(y.max())} >= num_classes {num_classes}")
        m = self.sample_grid(h, w)
        sal = saliency.detach().float()
        sal_blocks = F.adaptive_avg_pool2d(sal[:, None], (m, m))[:, 0].cpu()
        peaks = _saliency_peaks(sal).cpu()
        weights = torch.zeros(b, b, dtype=torch.float64)
        block_of = _block_ids(m, h, w)
        # full partitions in one batch, the remainder (if any) in a second
        n_full = b // self.m_part
        groups = [(0, n_full, self.m_part)] if n_full else []
        if b % self.m_part:
            groups.append((n_full * self.m_part, 1, b % self.m_part))
        parts_out = []  # (first input index, labeling (O, m, m, n)) per partition
        for start, parts, size in groups:
            if size < 2:  # a partition of one input cannot be mixed: passed through
                z = torch.ones(1, 1, m, m, 1, dtype=torch.float64)
            else:
                sl = slice(start, start + parts * size)
                pk = peaks[sl].reshape(parts, size, 2)
                dist = (pk[:, :, None] - pk[:, None]).abs().sum(-1)
                z = self.solve(sal_blocks[sl].reshape(parts, size, m, m), dist)
            for q in range(parts):
                s0 = start + q * size
                mass = _pixel_mass(z[q], block_of)  # (O, n)
                order = _match_outputs(mass)
                weights[s0 : s0 + size, s0 : s0 + size] = mass[order]
                parts_out.append((s0, z[q][order]))
        dev = x.device
        mixed = _mix_outputs(x, parts_out, block_of.to(dev))
        starts = torch.cat([torch.full((zq.shape[0],), s) for s, zq in parts_out])
        pad = max(zq.shape[-1] for _, zq in parts_out)
        block_weights = torch.cat([F.pad(zq, (0, pad - zq.shape[-1])) for _, zq in parts_out])
        weights32 = weights.float()
        onehot = F.one_hot(y.cpu(), num_classes).float()
        soft = weights32 @ onehot
        soft = soft / soft.sum(1, keepdim=True)
        index, lam = _two_way_summary(weights)
        return CoMixupOutput(
            inputs=match_format(mixed.to(x.dtype), x),
            y_a=y,
            y_b=y[index.to(dev)],
            lam=lam.to(dev),
            index=index.to(dev),
            soft_targets=soft.to(dev),
            weights=weights32.to(dev),
            block_weights=block_weights.float().to(dev),
            partition_start=starts.to(dev),
            extra_losses={} if clean_loss is None else {"clean_loss": clean_loss},
        )


def _dirichlet(alpha: float, parts: int, n: int, generator) -> np.ndarray:
    """(parts, n) Dirichlet(alpha) draws (the prior pi), reproducible from ``generator``."""
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    if alpha <= 0:
        return np.full((parts, n), 1.0 / n)
    return rng.dirichlet([alpha] * n, size=parts)


def _saliency_peaks(sal: Tensor) -> Tensor:
    """(B, 2) row/col of each map's peak after an 8x8 box filter (official compatibility)."""
    k = min(8, sal.shape[-2], sal.shape[-1])
    pooled = F.avg_pool2d(sal[:, None], k, stride=1)[:, 0]
    flat = pooled.reshape(sal.shape[0], -1).argmax(1)
    return torch.stack([flat // pooled.shape[-1], flat % pooled.shape[-1]], 1).double()


def _resolve_identical(assigned: np.ndarray) -> np.ndarray:
    """Official post-processing: outputs using the same set of inputs get +1 cost on
    different inputs of that set. ``assigned`` (P, O, n) bool -> add_cost (P, O, n)."""
    add = np.zeros(assigned.shape)
    same = (assigned[:, :, None] == assigned[:, None]).all(-1)
    for q, i1, i2 in zip(*np.nonzero(np.triu(same, k=1))):
        used = np.flatnonzero(assigned[q, i1])
        if len(used) > 1:
            add[q, i1, used[0]] = 1.0
            add[q, i2, used[1]] = 1.0
    return add


def _block_ids(m: int, h: int, w: int) -> Tensor:
    """(H, W) int64: the block of the ``m x m`` grid each pixel takes its weights from
    (nearest upsampling, as ``F.interpolate(..., mode='nearest')``)."""
    ids = torch.arange(m * m, dtype=torch.float32).view(1, 1, m, m)
    return F.interpolate(ids, size=(h, w), mode="nearest")[0, 0].long()


def _pixel_mass(z: Tensor, block_of: Tensor) -> Tensor:
    """(O, n) mean pixel weight of each input after upsampling (O, m, m, n) to the pixels
    of ``block_of``: block weights times the blocks' pixel counts."""
    o, m, _, n = z.shape
    pixels = torch.bincount(block_of.flatten(), minlength=m * m).to(z.dtype)
    return (z.reshape(o, m * m, n) * pixels[None, :, None]).sum(1) / block_of.numel()


def _mix_outputs(x: Tensor, parts_out: list, block_of: Tensor) -> Tensor:
    """Outputs (B, C, H, W) = sum_i up(z)_i * x_i, for the labelings ``(first input,
    z (O, m, m, n))`` of all partitions. A block holds one input or two halves, so each
    pixel gathers its (at most) two inputs: two gathers over the whole batch."""
    b, c = x.shape[:2]
    tops_w, tops_i = [], []
    for start, z in parts_out:
        o, m, _, n = z.shape
        flat = F.pad(z.reshape(o, m * m, n), (0, max(0, 2 - n))).to(torch.float32)
        top_w, top_i = flat.topk(2, dim=-1)
        tops_w.append(top_w)
        tops_i.append((top_i + start).clamp_max(b - 1))  # a padded input has weight 0
    top_w = torch.cat(tops_w).to(x.device).permute(2, 0, 1)[:, :, block_of]  # (2, B, H, W)
    top_i = torch.cat(tops_i).to(x.device).permute(2, 0, 1)[:, :, block_of]
    xf = x.float()

    def term(k: int) -> Tensor:
        index = top_i[k][:, None].expand(b, c, *block_of.shape)
        return torch.gather(xf, 0, index).mul_(top_w[k][:, None])

    return term(0).add_(term(1))


def _match_outputs(mass: Tensor) -> Tensor:
    """Order outputs so that output i holds as much of input i as possible (max-mass matching)."""
    rows, cols = linear_sum_assignment(-mass.numpy())
    order = torch.empty(len(cols), dtype=torch.long)
    order[torch.from_numpy(cols)] = torch.from_numpy(rows)
    return order


def _two_way_summary(weights: Tensor):
    """index (B,) permutation without fixed points maximising the second mass, and lam."""
    b = weights.shape[0]
    second = weights.clone()
    second.fill_diagonal_(-1.0)
    _, cols = linear_sum_assignment(-second.numpy())
    index = torch.from_numpy(cols).long()
    w_a = weights.diagonal()
    w_b = weights[torch.arange(b), index]
    lam = torch.where(w_a + w_b > 0, w_a / (w_a + w_b).clamp_min(1e-30), torch.ones_like(w_a))
    return index, lam.float()


def _saliency_and_clean_loss(model, x: Tensor, y: Tensor, clean_lam: float):
    if clean_lam <= 0:
        return input_gradient_saliency(model, x, y), None
    from ._saliency import train_mode_saliency_and_loss

    sal, loss = train_mode_saliency_and_loss(model, x, y)
    return sal, clean_lam * loss
