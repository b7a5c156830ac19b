"""Exact minimisation of small-grid multi-label energies by dynamic programming, compiled.

For ``N`` problems on an ``H x W`` 4-connected grid with ``L`` labels and one pairwise
table ``P`` (L, L) shared by all problems,

    min_l  sum_p U[n, p, l_p] + sum_{p~q} P[l_p, l_q]      (p above / left of q)

is solved exactly by a dynamic program over whole rows (``L**W`` row states). The
row-to-row step is separable over columns: replacing the label of one column at a time
(the min over the label above it) costs ``O(W L^(W+1))`` per row instead of ``L^(2W)``.
The argmin of every column step is kept (int8) for backtracking. Ties go to the smallest
label above.

The problems are tiny (Co-Mixup's 4 x 4 cells with up to ~6 labels) and many, so the DP is
compiled with numba (``@njit(cache=True)``: compiled once per machine, a few seconds, then
loaded from the cache); :func:`rows_dp_into` is also called from inside Co-Mixup's compiled
descent (:mod:`mixbench.mixers._comixup_sweep`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MAX_LABELS = 127  # argmin choices are stored as int8


def grid_energy(unary: np.ndarray, pair: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) energy of ``labels`` (N, H, W) for ``unary`` (N, H, W, L) and ``pair`` (L, L)."""
    data = np.take_along_axis(unary, labels[..., None], -1)[..., 0].sum((1, 2))
    v = pair[labels[:, :-1, :], labels[:, 1:, :]].sum((1, 2))
    h = pair[labels[:, :, :-1], labels[:, :, 1:]].sum((1, 2))
    return data + v + h


@njit(cache=True)
def _digit_sum(table, width, n_labels, out):
    """``out[s] = ((table[0, d_0] + table[1, d_1]) + ...) + table[W-1, d_(W-1)]`` for every
    row state ``s`` with digits ``d_c`` (column 0 the most significant, base ``L``), built
    prefix by prefix (each prefix's sums expanded by the next column's labels, in place,
    from the back)."""
    size = 1
    out[0] = 0.0
    for c in range(width):
        for p in range(size - 1, -1, -1):
            base = out[p]
            for a in range(n_labels):
                out[p * n_labels + a] = base + table[c, a]
        size *= n_labels


@njit(cache=True)
def row_pair_cost(pair, width, out):
    """``out[s]`` = horizontal pair cost of row state ``s``: (p01 + p12) + p23 + ...."""
    n_labels = pair.shape[0]
    n_states = out.shape[0]
    out[:] = 0.0
    for c in range(width - 1):
        stride = n_labels ** (width - 2 - c)
        for hi in range(0, n_states, stride * n_labels * n_labels):
            for a in range(n_labels):
                for b in range(n_labels):
                    p = pair[a, b]
                    first = hi + (a * n_labels + b) * stride
                    for lo in range(first, first + stride):
                        out[lo] += p


@njit(cache=True)
def rows_dp_into(unary, pair, horiz, labels, value, scratch, kept):
    """Exact minimiser of one problem, written into ``labels`` (H, W) int64.

    ``unary`` (H, W, L), ``pair`` (L, L), ``horiz`` = :func:`row_pair_cost` of ``pair``
    (L**W,); work arrays: ``value``, ``scratch`` float64 (L**W,) and ``kept`` float64
    (H - 1, W, L**W), the values before each column step (callers solving many problems
    reuse them).

    Each column step minimises over the most significant digit (the label above) with
    contiguous, branch-free passes, then rotates that digit, now the new row's label, to
    the least significant place; after ``W`` steps the state is in row order again.
    Backtracking recomputes the argmin along the optimal path only (ties: smallest label).
    """
    height, width, n_labels = unary.shape
    n_states = n_labels**width
    rest_states = n_states // n_labels
    # Potts-like tables (beta = largest off-diagonal entry, diagonal <= beta, few entries
    # below beta: Co-Mixup's) take a cheaper column step with the very same minima
    beta = -np.inf
    for a in range(n_labels):
        for b in range(n_labels):
            if a != b:
                beta = max(beta, pair[a, b])
    exc_a = np.empty(n_labels * n_labels, dtype=np.int64)
    exc_new = np.empty(n_labels * n_labels, dtype=np.int64)
    n_exc = 0
    for a in range(n_labels):
        if pair[a, a] > beta:
            n_exc = -1
            break
        for b in range(n_labels):
            if a != b and pair[a, b] < beta:
                exc_a[n_exc], exc_new[n_exc] = a, b
                n_exc += 1
    if n_labels < 2 or n_exc > n_labels:
        n_exc = -1
    _digit_sum(unary[0], width, n_labels, value)
    value += horiz
    for r in range(1, height):
        kept[r - 1, 0] = value
        for c in range(width):
            src = kept[r - 1, c]
            dst = kept[r - 1, c + 1] if c + 1 < width else value
            if n_exc >= 0:  # Potts-like: min(src[new] + P[new, new], min_a src[a] + beta, ...)
                low = dst  # its first rest_states entries hold min_a src[a, rest] for now
                for lo in range(rest_states):
                    low[lo] = src[lo]
                for a in range(1, n_labels):
                    first = a * rest_states
                    for lo in range(rest_states):
                        low[lo] = min(low[lo], src[first + lo])
                for new in range(n_labels):
                    out = new * rest_states
                    p = pair[new, new]
                    for lo in range(rest_states):
                        scratch[out + lo] = min(src[out + lo] + p, low[lo] + beta)
                for e in range(n_exc):  # the entries below beta
                    a, new = exc_a[e], exc_new[e]
                    p = pair[a, new]
                    out, first = new * rest_states, a * rest_states
                    for lo in range(rest_states):
                        scratch[out + lo] = min(scratch[out + lo], src[first + lo] + p)
            else:  # scratch[new, rest] = min_a src[a, rest] + P[a, new]
                for new in range(n_labels):
                    out = new * rest_states
                    p = pair[0, new]
                    for lo in range(rest_states):
                        scratch[out + lo] = src[lo] + p
                    for a in range(1, n_labels):
                        p = pair[a, new]
                        first = a * rest_states
                        for lo in range(rest_states):
                            scratch[out + lo] = min(scratch[out + lo], src[first + lo] + p)
            for new in range(n_labels):  # rotate: dst[rest, new] = scratch[new, rest]
                out = new * rest_states
                for rest in range(rest_states):
                    dst[rest * n_labels + new] = scratch[out + rest]
        _digit_sum(unary[r], width, n_labels, scratch)
        for s in range(n_states):
            value[s] += scratch[s] + horiz[s]
    state = 0
    for s in range(1, n_states):
        if value[s] < value[state]:
            state = s
    for r in range(height - 1, -1, -1):
        rest = state
        for c in range(width - 1, -1, -1):
            labels[r, c] = rest % n_labels
            rest //= n_labels
        if r == 0:
            break
        for c in range(width - 1, -1, -1):  # undo the column steps, last first
            new, rest = state % n_labels, state // n_labels
            src = kept[r - 1, c]
            best = 0
            for a in range(1, n_labels):
                if (
                    src[a * rest_states + rest] + pair[a, new]
                    < src[best * rest_states + rest] + pair[best, new]
                ):
                    best = a
            state = best * rest_states + rest


@njit(cache=True)
def _solve_many(unary, pair, labels):
    n, height, width, n_labels = unary.shape
    n_states = n_labels**width
    horiz = np.empty(n_states)
    row_pair_cost(pair, width, horiz)
    value, scratch = np.empty(n_states), np.empty(n_states)
    kept = np.empty((max(height - 1, 1), width, n_states))
    for i in range(n):
        rows_dp_into(unary[i], pair, horiz, labels[i], value, scratch, kept)


def solve_grid(unary: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Exact minimiser (N, H, W) int64 of :func:`grid_energy` for ``unary`` (N, H, W, L)."""
    unary = np.ascontiguousarray(unary, dtype=np.float64)
    pair = np.ascontiguousarray(pair, dtype=np.float64)
    n, height, width, n_labels = unary.shape
    if pair.shape != (n_labels, n_labels):
        raise ValueError(f"pair must be (L, L) = {(n_labels, n_labels)}, got {pair.shape}")
    if not 1 <= n_labels <= _MAX_LABELS:
        raise ValueError(f"the grid DP supports 1..{_MAX_LABELS} labels, got {n_labels}")
    labels = np.empty((n, height, width), dtype=np.int64)
    _solve_many(unary, pair, labels)
    return labels
