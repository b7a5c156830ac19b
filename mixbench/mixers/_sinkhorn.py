"""Entropy-regularised optimal transport between uniform marginals (Sinkhorn-Knopp), batched
and in the log domain.

For a cost ``C`` (B, n, m) it returns the plan
``P* = argmin_P <P, C> - eps * H(P)`` subject to ``P 1 = 1/n``, ``P^T 1 = 1/m``
(Cuturi, "Sinkhorn Distances", NeurIPS 2013). The scalings are iterated as log-potentials,
``log u = log(1/n) - logsumexp(-C/eps + log v)`` and the same for ``v``, so that small
``eps`` against large costs neither underflows nor overflows (the plain matrix-scaling form
would compute ``exp(-C/eps) = 0``). The potentials are kept in float64 (float32 on devices
without it, e.g. Apple MPS): with ``C/eps`` of order 1e5 the float32 log-sums would lose
the marginals' accuracy, and the matrices are small (positions x positions).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# exp() of arguments that underflow runs an order of magnitude slower on CPUs (the subnormal
# and underflow path; docs/benchmarks_mixers.md), and the log-kernel -C/eps is routinely in
# the thousands: arguments are clamped at these floors, which changes a logsumexp by less
# than n * exp(-700) (float64) or n * exp(-80) (float32).
EXP_FLOOR = {torch.float64: -700.0, torch.float32: -80.0}


def _logsumexp(t: Tensor, dim: int) -> Tensor:
    """``torch.logsumexp`` with exp arguments clamped at ``EXP_FLOOR`` (finite inputs)."""
    top = t.amax(dim, keepdim=True)
    return top.squeeze(dim) + (t - top).clamp_min_(EXP_FLOOR[t.dtype]).exp_().sum(dim).log_()


def sinkhorn_plan(
    cost: Tensor,
    eps: float = 0.1,
    max_iter: int = 100,
    tol: float = 1e-4,
    check_every: int = 10,
    potential_tol: float = 0.0,
) -> Tensor:
    """Optimal transport plan (B, n, m), float32, for a batch of costs (B, n, m).

    Args:
        cost: (B, n, m) transport costs (any float dtype).
        eps: entropic regularisation (> 0); smaller is closer to a hard assignment.
        max_iter: Sinkhorn iterations at most (one iteration = a row and a column update).
        tol: stop early once the row marginals are within ``tol`` of uniform in L1 distance
            for every batch element (the column marginals are exact after each column
            update); checked every ``check_every`` iterations, each check one device sync.
            ``tol = 0`` always runs ``max_iter`` iterations without syncing.
        potential_tol: the stopping rule of the official AlignMixup code (and OpenMixup's
            copy), used when > 0 (they use 0.1): stop after the first iteration in which the
            row potentials ``f = eps * log u`` moved by less than ``potential_tol`` in L1,
            averaged over the batch; checked every iteration.

    Returns:
        The plan, without gradient (it is a constant of the mixing, as in AlignMixup).
    """
    if cost.dim() != 3:
        raise ValueError(f"cost must be a batch of matrices (B, n, m), got shape {tuple(cost.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    with torch.no_grad():
        dtype = torch.float32 if cost.device.type == "mps" else torch.float64
        log_k = cost.to(dtype) / -eps
        b, n, m = log_k.shape
        log_mu, log_nu = -math.log(n), -math.log(m)
        log_v = torch.zeros(b, m, device=cost.device, dtype=dtype)
        log_u = torch.zeros(b, n, device=cost.device, dtype=dtype)
        for it in range(1, max_iter + 1):
            prev_u = log_u
            log_u = log_mu - _logsumexp(log_k + log_v[:, None, :], dim=2)
            log_v = log_nu - _logsumexp(log_k + log_u[:, :, None], dim=1)
            if potential_tol > 0 and float(eps * (log_u - prev_u).abs().sum(1).mean()) < potential_tol:
                break
            if tol > 0 and it % check_every == 0 and it < max_iter:
                rows = (log_u + _logsumexp(log_k + log_v[:, None, :], dim=2)).exp()
                if float((rows - 1.0 / n).abs().sum(1).max()) < tol:
                    break
        log_plan = log_u[:, :, None] + log_k + log_v[:, None, :]
        return log_plan.clamp_min_(EXP_FLOOR[dtype]).exp_().float()
