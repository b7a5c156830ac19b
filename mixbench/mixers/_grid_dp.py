"""Exact minimisation of small-grid multi-label energies by dynamic programming, batched.

For ``N`` problems on an ``H x W`` 4-connected grid with ``L`` labels and one pairwise
table ``P`` (L, L) shared by all problems,

    min_l  sum_p U[n, p, l_p] + sum_{p~q} P[l_p, l_q]      (p above / left of q)

is solved exactly by dynamic programming in NumPy (the problems are tiny, so NumPy's
per-call overhead, not arithmetic, is what costs):

* :func:`solve_rows_dp` -- over whole rows (``L**W`` states); the row-to-row step is
  separable over columns, so each costs ``O(W L^(W+1))``. For narrow grids (Co-Mixup's
  4 x 4 cells with up to ~6 labels).
* :func:`solve_frontier_dp` -- cell by cell in raster order with the last ``W`` labels as
  state: the same complexity, more (smaller) steps; used when ``L**W`` is large.
"""
from __future__ import annotations

import numpy as np

_TABLES: dict = {}


def grid_energy(unary: np.ndarray, pair: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) energy of ``labels`` (N, H, W) for ``unary`` (N, H, W, L) and ``pair`` (L, L)."""
    data = np.take_along_axis(unary, labels[..., None], -1)[..., 0].sum((1, 2))
    v = pair[labels[:, :-1, :], labels[:, 1:, :]].sum((1, 2))
    h = pair[labels[:, :, :-1], labels[:, :, 1:]].sum((1, 2))
    return data + v + h


def _row_states(n_labels: int, width: int) -> np.ndarray:
    key = (n_labels, width)
    if key not in _TABLES:
        grids = np.meshgrid(*[np.arange(n_labels)] * width, indexing="ij")
        _TABLES[key] = np.stack([g.reshape(-1) for g in grids], 1)
    return _TABLES[key]


def _min_over_axis(v: np.ndarray, axis: int, pair: np.ndarray):
    """``min_a v[..., a (at axis), ...] + pair[a, l]`` with ``l`` replacing ``a``, and the
    minimising ``a`` (same shape), flattened per problem for backtracking."""
    moved = v.swapaxes(axis, -1)[..., :, None] + pair               # (..., a, l)
    best = moved.min(-2).swapaxes(axis, -1)
    arg = moved.argmin(-2).swapaxes(axis, -1)
    return best, arg.reshape(v.shape[0], -1)


def solve_rows_dp(unary: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Exact minimiser (N, H, W) int64 of :func:`grid_energy` by a row dynamic program."""
    n, height, width, ll = unary.shape
    states = _row_states(ll, width)                                   # (S, W)
    n_states = states.shape[0]
    horiz = pair[states[:, :-1], states[:, 1:]].sum(1)
    row_cost = sum(unary[:, :, c, states[:, c]] for c in range(width)) + horiz   # (N, H, S)
    shape = (n,) + (ll,) * width
    value = row_cost[:, 0]
    choices = []
    if n_states <= 128:   # few states: one dense row-to-row step beats W column steps
        vert = pair[states[:, None, :], states[None, :, :]].sum(-1)          # (S_prev, S)
        for r in range(1, height):
            t = value[:, :, None] + vert
            choices.append(t.argmin(1))
            value = t.min(1) + row_cost[:, r]
        labels = np.empty((n, height), dtype=np.int64)
        labels[:, -1] = value.argmin(1)
        rows = np.arange(n)
        for r in range(height - 1, 0, -1):
            labels[:, r - 1] = choices[r - 1][rows, labels[:, r]]
        return states[labels]
    for r in range(1, height):
        v = value.reshape(shape)
        steps = []
        for c in range(width):   # column c of the new row: min over the label above it
            v, arg = _min_over_axis(v, 1 + c, pair)
            steps.append(arg)
        value = v.reshape(n, n_states) + row_cost[:, r]
        choices.append(steps)
    strides = ll ** np.arange(width - 1, -1, -1)
    labels = np.empty((n, height, width), dtype=np.int64)
    labels[:, height - 1] = states[value.argmin(1)]
    rows = np.arange(n)
    for r in range(height - 1, 0, -1):
        cur = labels[:, r].copy()
        for c in range(width - 1, -1, -1):
            cur[:, c] = choices[r - 1][c][rows, cur @ strides]
        labels[:, r - 1] = cur
    return labels


def solve_frontier_dp(unary: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Exact minimiser (N, H, W) int64 of :func:`grid_energy`, cell by cell."""
    n, height, width, ll = unary.shape
    value = np.zeros((n,) + (ll,) * width)         # labels of the last W cells at axes 1..W
    choices = []
    for r in range(height):
        for c in range(width):
            if r > 0:
                value, arg = _min_over_axis(value, 1 + c, pair)
                choices.append(arg)
            else:   # no cell above: that axis is still a dummy
                value = np.broadcast_to(value.take([0], axis=1 + c), value.shape)
                choices.append(None)
            shape = [n] + [1] * width
            shape[1 + c] = ll
            value = value + unary[:, r, c].reshape(shape)
            if c > 0:
                shape = [1] * (width + 1)
                shape[c], shape[1 + c] = ll, ll
                value = value + pair.reshape(shape)
    strides = ll ** np.arange(width - 1, -1, -1)
    flat = value.reshape(n, -1).argmin(1)
    frontier = (flat[:, None] // strides) % ll
    labels = np.zeros((n, height, width), dtype=np.int64)
    rows = np.arange(n)
    for step in range(height * width - 1, -1, -1):
        r, c = divmod(step, width)
        labels[:, r, c] = frontier[:, c]
        if choices[step] is not None:
            frontier[:, c] = choices[step][rows, frontier @ strides]
    return labels


def solve_grid(unary: np.ndarray, pair: np.ndarray, max_states: int = 4096) -> np.ndarray:
    """Exact minimiser: the row DP when ``L**W <= max_states``, else the frontier DP."""
    ll, width = unary.shape[-1], unary.shape[2]
    if ll ** width <= max_states:
        return solve_rows_dp(unary, pair)
    return solve_frontier_dp(unary, pair)
