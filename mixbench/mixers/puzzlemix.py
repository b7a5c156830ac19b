"""PuzzleMix (Kim, Choo, Song, "Puzzle Mix: Exploiting Saliency and Local Statistics for
Optimal Mixup", ICML 2020; official code github.com/snu-mllab/PuzzleMix).

Image: ``x~ = z (.) T_a(x_i) + (1 - z) (.) T_b(x_j)``, ``j = index[i]``, where ``z`` is a
mask that is constant over the cells of a ``G x G`` block grid with values in
``{0, 1/(L-1), ..., 1}`` (``L = n_labels``), and ``T_a``, ``T_b`` are *block permutations*
(optimal transport of salient blocks into the region each image keeps).
Label: ``y~ = lam y_i + (1 - lam) y_j`` with ``lam = mean(z)`` (the returned ``lam``).

The mask minimises, exactly (one min-cut, :mod:`mixbench.mixers._graphcut`), the energy

    E(z) = sum_p [ z_p u_b(p) + (1 - z_p) u_a(p) - eta/G^2 log P_lam(z_p) ]
         + sum_{p~q} (beta' + gamma beta' d_pq) (z_p - z_q)^2 + (data terms folded into u)

where ``u_a``, ``u_b`` are the block-pooled, sum-normalised saliencies of ``x_i``, ``x_j``
(saliency = channel RMS of the input gradient of the cross-entropy, see
:mod:`mixbench.mixers._saliency`), ``P_lam`` is the Binomial(L-1, lam) prior on the label
with ``lam ~ Beta(alpha, alpha)``, ``beta' = beta / (16 G)``, and ``d_pq`` the mean absolute
difference of the de-normalised images (pooled over ``neigh_size`` pixels) across the
boundary of blocks ``p`` and ``q`` for each choice of source; the four source combinations are
reduced to unary terms plus a single ``(z_p - z_q)^2`` weight exactly as in the official
code. The official code minimises the same energy with alpha-beta swap moves (gco, a local
minimum); ours is its global minimum, so its value is never higher.

Transport (``transport=True``): on a grid of ``t_size``-pixel cells, each image's cells are
moved towards the region where it is kept by the official greedy assignment on the cost
``t_eps * ||pos_src - pos_dst||^2 / (T-1)^2 - saliency(src) * [z(dst) > 0]`` (rows pick
their cheapest destination; a destination keeps its cheapest claimant; losers pay +1 and
retry, ``T`` rounds). Cells left unassigned are completed to a permutation (in index
order), so transport only moves pixel values, never drops or duplicates them.

Identity that holds (checked in tests/mixers/test_puzzlemix.py)::

    out.inputs == out.mask * permute_blocks(x, out.perm_a, out.transport_grid)
                  + (1 - out.mask) * permute_blocks(x[out.index], out.perm_b, out.transport_grid)
    out.lam == out.mask.mean((1, 2, 3))

With ``transport=False`` both permutations are the identity and the usual mask identity
``inputs == mask * x + (1 - mask) * x[index]`` holds.

Published defaults (OpenMixup CIFAR-100 ResNet-18 config, official code): alpha 1,
block_num 5 (grid side ``2**k``, ``k`` uniform in ``{1, ..., 4}``), beta 1.2, gamma 0.5,
eta 0.2, neigh_size 4, n_labels 3, transport on, t_eps 0.8, t_size 4 (ImageNet: t_size -1,
transport at the mask's resolution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import SupportsInt, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._graphcut import solve_chain_grid
from ._saliency import input_gradient_saliency
from .base import BaseMixer, MixOutput
from .checks import check_inputs
from .kernels import blend, match_format

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TRANSPORT_CHUNK = 2**24  # cost-matrix elements per chunk of the batch


@dataclass
class PuzzleMixOutput(MixOutput):
    """:class:`MixOutput` plus the block permutations applied by the transport step.

    ``perm_a``, ``perm_b``: (B, N) int64, ``N = Th * Tw`` cells of ``transport_grid``
    ``(Th, Tw)``: cell ``k`` (row-major) of the transported image is cell ``perm[k]`` of the
    source image (``x`` for ``perm_a``, ``x[index]`` for ``perm_b``).
    """

    perm_a: Tensor | None = None
    perm_b: Tensor | None = None
    transport_grid: tuple[int, int] | None = None

    def sources(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The two transported images mixed by ``mask``, from the clean batch ``x``."""
        if self.perm_a is None or self.perm_b is None or self.transport_grid is None:
            raise ValueError(
                "sources() needs the block permutations of the transport step: "
                "this output has none (PuzzleMix with transport=True sets them)"
            )
        return (
            permute_blocks(x, self.perm_a, self.transport_grid),
            permute_blocks(x[self.index], self.perm_b, self.transport_grid),
        )


def permute_blocks(x: Tensor, perm: Tensor, grid: tuple[int, int]) -> Tensor:
    """Rearrange the cells of a ``grid = (Th, Tw)`` partition of ``x`` (B, C, H, W):
    cell ``k`` (row-major) of the result is cell ``perm[b, k]`` of ``x[b]``."""
    b, c, h, w = x.shape
    th, tw = grid
    bh, bw = h // th, w // tw
    cells = x.reshape(b, c, th, bh, tw, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, th * tw, c, bh, bw)
    cells = cells[torch.arange(b, device=x.device)[:, None], perm.to(x.device)]
    out = cells.reshape(b, th, tw, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    return out


def transport_permutation(
    keep: Tensor, saliency: Tensor, grid: tuple[int, int], t_eps: float, n_iter: int
) -> Tensor:
    """PuzzleMix's greedy transport of cells, completed to a permutation (see module doc).

    Args:
        keep: (B, N) float, > 0 where the image is kept (the mask, or 1 - mask).
        saliency: (B, N) float, normalised cell saliency of the image.
        grid: (Th, Tw), ``N = Th * Tw``.
        t_eps: transport cost coefficient.
        n_iter: rounds of the greedy assignment (the official code uses ``Th``).
    Returns:
        (B, N) int64 CPU tensor ``perm``: destination cell ``k`` receives source cell ``perm[k]``.
    """
    keep = keep.detach().float().cpu()
    saliency = saliency.detach().float().cpu()
    th, tw = grid
    yy, xx = torch.meshgrid(torch.arange(th), torch.arange(tw), indexing="ij")
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1).float()
    dist = torch.cdist(pos, pos).pow(2) / float(max(th, tw) - 1) ** 2
    n = th * tw
    chunk = max(1, _TRANSPORT_CHUNK // (n * n))
    base = t_eps * dist
    return torch.cat(
        [
            _greedy_assign(
                torch.addcmul(base, s[:, :, None], (z[:, None, :] > 0).float(), value=-1.0), n_iter
            )
            for z, s in zip(keep.split(chunk), saliency.split(chunk))
        ]
    )


def _greedy_assign(cost: Tensor, n_iter: int) -> Tensor:
    """Official PuzzleMix assignment rounds on ``cost`` (B, N, N) [src, dst], modified in place.

    Only claims at negative cost can win a destination (a claimant at cost >= 0 never can,
    since its costs only grow), so rounds stop early once no such claim is contested; the
    result equals the official ``n_iter`` rounds.
    """
    b, n, _ = cost.shape
    rows = torch.arange(n).expand(b, n)
    choice = cost.argmin(-1)
    for _ in range(max(int(n_iter), 1)):
        claim = cost.gather(2, choice[..., None])[..., 0]
        live = claim < 0
        claim_live = torch.where(live, claim, torch.zeros(()))
        best = torch.zeros(b, n).scatter_reduce(1, choice, claim_live, "amin")
        cand = live & (claim == best.gather(1, choice))
        first = torch.full((b, n), n).scatter_reduce(1, choice, torch.where(cand, rows, n), "amin")
        won = cand & (first.gather(1, choice) == rows)
        lost = live & ~won
        if not bool(lost.any()):
            break
        bi, ri = lost.nonzero(as_tuple=True)
        cost[bi, ri, choice[bi, ri]] += 1.0
        choice[bi, ri] = cost[bi, ri].argmin(-1)
    perm = torch.full((b, n), -1, dtype=torch.long)
    bi, ri = won.nonzero(as_tuple=True)
    perm[bi, choice[bi, ri]] = ri
    # complete: unassigned sources fill unassigned destinations, both in index order
    src_order = (won.long() * n + rows).argsort(1)
    dst_order = ((perm >= 0).long() * n + rows).argsort(1)
    n_free = (~won).sum(1, keepdim=True)
    fill = torch.where(rows < n_free, src_order, perm.gather(1, dst_order))
    return perm.scatter(1, dst_order, fill)


def _boundary_penalty(top: Tensor, bottom: Tensor, g: int, cells: int, dim: int) -> Tensor:
    """Mean |top - bottom| across the boundaries between consecutive blocks along ``dim``.

    ``top``, ``bottom``: (B, C, g*ch, g*cw) images pooled to ``cells`` per block along ``dim``;
    returns (B, g-1, g) for ``dim=2`` (vertical neighbours) or (B, g, g-1) for ``dim=3``.
    """
    idx_last = torch.arange(g - 1, device=top.device) * cells + cells - 1
    a = top.index_select(dim, idx_last)
    bb = bottom.index_select(dim, idx_last + 1)
    diff = (a - bb).abs().mean(1)  # (B, g-1, g*cw) or (B, g*ch, g-1)
    if dim == 2:
        return diff.reshape(diff.shape[0], g - 1, g, -1).mean(-1)
    return diff.reshape(diff.shape[0], g, -1, g - 1).mean(2)


class PuzzleMix(BaseMixer):
    """Saliency-guided mixing with a graph-cut mask and optimal transport of blocks.

    Args:
        alpha: lambda ~ Beta(alpha, alpha), the prior's mixing ratio; default 1.0.
        block_num: grid sides ``2**k`` with ``k`` uniform in ``{1, ..., block_num - 1}``
            (an ``int``, default 5: sides 2, 4, 8, 16), or a ``(lo, hi)`` exponent range;
            sides that do not divide the image are skipped.
        beta: label smoothness, default 1.2 (normalised to ``beta / (16 G)``).
        gamma: data local smoothness, default 0.5.
        eta: prior weight, default 0.2.
        neigh_size: pixels pooled for the boundary smoothness term, default 4.
        n_labels: mask values ``{0, 1/(L-1), ..., 1}``, default 3.
        transport: move salient blocks into the kept region, default True.
        t_eps: transport cost coefficient, default 0.8.
        t_size: transport cell size in pixels, default 4; -1: the mask's block size.
        mean, std: per-channel normalisation of the inputs, undone for the smoothness term;
            default: CIFAR statistics for images narrower than 64 px, ImageNet's otherwise
            (as OpenMixup), or none for inputs that do not have 3 channels.
        solver: min-cut backend, ``auto`` (PyMaxflow's Boykov-Kolmogorov when installed,
            else SciPy's Dinic), ``scipy`` or ``pymaxflow``; all give a global minimum.
        prob, pairing, lam_mode, generator: see :class:`~mixbench.mixers.base.BaseMixer`.

    Call as ``mixer(x, y, model=clf)``: the saliency pass (eval mode, input gradient only)
    leaves the model's gradients, BN statistics and train/eval flags untouched. Returns a
    :class:`PuzzleMixOutput` (see the module docstring for the exact identity).
    """

    needs_model = True

    def __init__(
        self,
        alpha: float = 1.0,
        block_num: int | Sequence[int] = 5,
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        n_labels: int = 3,
        transport: bool = True,
        t_eps: float = 0.8,
        t_size: int = 4,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        solver: str = "auto",
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, generator=generator)
        if solver not in ("auto", "scipy", "pymaxflow"):
            raise ValueError(f"solver must be 'auto', 'scipy' or 'pymaxflow', got {solver!r}")
        self.solver = solver
        if np.isscalar(block_num):
            lo, hi = 1, int(cast(SupportsInt, block_num))
        else:
            lo, hi = (int(v) for v in cast(Sequence[int], block_num))
        if not 0 <= lo < hi:
            raise ValueError(
                f"block_num must be an int >= 2 (grid sides 2**1 .. 2**(block_num-1)) "
                f"or an exponent range (lo, hi) with 0 <= lo < hi, got {block_num!r}"
            )
        if int(n_labels) < 2:
            raise ValueError(f"n_labels must be >= 2 (mask values 0 .. 1), got {n_labels}")
        if int(neigh_size) < 1 or (int(t_size) < 1 and int(t_size) != -1):
            raise ValueError(
                f"neigh_size must be >= 1 and t_size >= 1 or -1, got neigh_size={neigh_size}, t_size={t_size}"
            )
        for name, val in (("beta", beta), ("gamma", gamma), ("eta", eta), ("t_eps", t_eps)):
            if not float(val) >= 0:
                raise ValueError(f"{name} must be >= 0, got {val}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (the inputs' normalisation) or neither")
        self.block_num = block_num
        self.block_exponents = (lo, hi)
        self.beta, self.gamma, self.eta = float(beta), float(gamma), float(eta)
        self.neigh_size, self.n_labels = int(neigh_size), int(n_labels)
        self.transport, self.t_eps, self.t_size = bool(transport), float(t_eps), int(t_size)
        self.mean, self.std = mean, std

    # -- pieces (public so that benchmarks and tests can drive them) --------------------
    def sample_grid(self, height: int, width: int) -> int:
        """Draw the grid side ``G`` (see ``block_num``) among sides dividing the image."""
        lo, hi = self.block_exponents
        sides = [2**k for k in range(lo, hi) if height % 2**k == 0 and width % 2**k == 0]
        if not sides:
            raise ValueError(
                f"PuzzleMix needs an image whose height and width are divisible "
                f"by a grid side 2**k, k in [{lo}, {hi}); got {height}x{width}. "
                f"Resize/crop the images or change block_num."
            )
        return sides[int(torch.randint(len(sides), (1,), generator=self.generator))]

    def _norm_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c, w = x.shape[1], x.shape[-1]
        mean: Sequence[float]
        std: Sequence[float]
        if self.mean is not None and self.std is not None:  # both or neither (__init__)
            mean, std = self.mean, self.std
        elif c == 3:
            mean, std = (CIFAR_MEAN, CIFAR_STD) if w < 64 else (IMAGENET_MEAN, IMAGENET_STD)
        else:
            mean, std = (0.0,) * c, (1.0,) * c
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries but the images have {c} channels")

        def as_t(v) -> Tensor:
            return torch.tensor(v, dtype=torch.float32, device=x.device).view(1, c, 1, 1)

        return as_t(mean), as_t(std)

    def graph_terms(self, x: Tensor, saliency: Tensor, index: Tensor, lam: Tensor, g: int):
        """The energy of the mask on a ``g x g`` grid, as float64 NumPy arrays.

        Returns ``(unary, w_v, w_h, sal_norm)``: ``unary`` (B, g, g, L) where label ``k``
        means mask value ``k / (L-1)`` (weight of ``x``); ``w_v`` (B, g-1, g) and ``w_h``
        (B, g, g-1) the weights of ``(z_p - z_q)^2`` (see :func:`solve_chain_grid`);
        ``sal_norm`` (B, g, g) the normalised block saliency of ``x``.
        """
        b, _, h, w = x.shape
        bh, bw = h // g, w // g
        sal = F.adaptive_avg_pool2d(saliency.float()[:, None], (g, g))[:, 0].double().cpu()
        sal_norm = _normalise(sal)
        index = index.cpu()
        u_a, u_b = sal_norm.clone(), sal_norm[index].clone()

        ns = min(self.neigh_size, bh, bw)
        ch, cw = max(1, bh // ns), max(1, bw // ns)
        mean, std = self._norm_stats(x)
        pooled = F.adaptive_avg_pool2d(x.float() * std + mean, (g * ch, g * cw)).double().cpu()
        p_a, p_b = pooled, pooled[index]
        beta = self.beta / g / 16.0
        scale = beta * self.gamma
        terms = {}
        for dim, cells in ((2, ch), (3, cw)):
            # pen[s][t]: source s on the first block, t on the second (1 = x, 0 = x[index])
            src = {1: p_a, 0: p_b}
            pen = {
                (s, t): scale * _boundary_penalty(src[s], src[t], g, cells, dim)
                for s in (0, 1)
                for t in (0, 1)
            }
            first = (
                (slice(None), slice(None, -1)) if dim == 2 else (slice(None), slice(None), slice(None, -1))
            )
            second = (slice(None), slice(1, None)) if dim == 2 else (slice(None), slice(None), slice(1, None))
            u_b[first] += (pen[1, 0] + pen[1, 1]) / 2
            u_a[first] += (pen[0, 1] + pen[0, 0]) / 2
            u_b[second] += (pen[0, 1] + pen[1, 1]) / 2
            u_a[second] += (pen[1, 0] + pen[0, 0]) / 2
            terms[dim] = (pen[1, 0] + pen[0, 1] - pen[1, 1] - pen[0, 0]) / 2 + beta

        n = self.n_labels - 1
        k = torch.arange(n + 1, dtype=torch.float64)
        lam = lam.double().cpu()[:, None]
        log_binom = torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        prob = torch.exp(log_binom) * lam**k * (1 - lam) ** (n - k)
        prior = -self.eta / g**2 * torch.log(prob + 1e-8)  # (B, L)
        z = k / n
        unary = z * u_b[..., None] + (1 - z) * u_a[..., None] + prior[:, None, None, :]
        return unary.numpy(), terms[2].numpy(), terms[3].numpy(), sal_norm

    # -- mixing ----------------------------------------------------------------------
    def mix(self, x: Tensor, y: Tensor, model=None) -> PuzzleMixOutput:
        return self.mix_with_saliency(x, y, input_gradient_saliency(model, x, y))

    def mix_with_saliency(self, x: Tensor, y: Tensor, saliency: Tensor) -> PuzzleMixOutput:
        """PuzzleMix given a (B, H, W) saliency map (what :meth:`mix` computes from the model)."""
        check_inputs(x, y)
        b, _, h, w = x.shape
        if saliency.shape != (b, h, w):
            raise ValueError(f"saliency must be (B, H, W) = {(b, h, w)}, got {tuple(saliency.shape)}")
        index = self.sample_index(b)
        lam = self.sample_lam(index)
        g = self.sample_grid(h, w)
        unary, w_v, w_h, sal_norm = self.graph_terms(x, saliency, index, lam, g)
        labels = solve_chain_grid(unary, w_v, w_h, backend=self.solver)
        grid_mask = torch.from_numpy(labels).float() / (self.n_labels - 1)

        bh, bw = h // g, w // g
        if self.transport:
            ts = min(self.t_size, bh, bw) if self.t_size > 0 else min(bh, bw)
            per = (bh // ts, bw // ts) if bh % ts == 0 and bw % ts == 0 else (1, 1)
            tgrid = (g * per[0], g * per[1])
            if per == (1, 1):
                sal_t = sal_norm.float()
            else:
                sal_t = _normalise(F.adaptive_avg_pool2d(saliency.float()[:, None], tgrid)[:, 0].cpu())
            mask_t = grid_mask.repeat_interleave(per[0], 1).repeat_interleave(per[1], 2).reshape(b, -1)
            index_cpu = index.cpu()
            perm_a = transport_permutation(mask_t, sal_t.reshape(b, -1), tgrid, self.t_eps, tgrid[1])
            perm_b = transport_permutation(
                1 - mask_t, sal_t[index_cpu].reshape(b, -1), tgrid, self.t_eps, tgrid[1]
            )
        else:
            tgrid = (g, g)
            perm_a = perm_b = torch.arange(g * g).expand(b, g * g)

        dev = x.device
        index, perm_a, perm_b = index.to(dev), perm_a.to(dev), perm_b.to(dev)
        mask = grid_mask.to(dev)[:, None].repeat_interleave(bh, 2).repeat_interleave(bw, 3)
        out = PuzzleMixOutput(
            inputs=x,
            y_a=y,
            y_b=y[index],
            lam=grid_mask.mean((1, 2)).to(dev),
            index=index,
            mask=mask,
            perm_a=perm_a,
            perm_b=perm_b,
            transport_grid=tgrid,
        )
        out.inputs = match_format(blend(*out.sources(x), mask), x)
        return out


def _normalise(sal: Tensor) -> Tensor:
    """Each sample's map divided by its sum; an all-zero map becomes uniform."""
    flat = sal.reshape(sal.shape[0], -1)
    total = flat.sum(1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    return torch.where(total > 0, flat / total.clamp_min(1e-30), uniform).reshape(sal.shape)
