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
    if len(_TABLES) > 256:
        _TABLES.clear()
    key = (n_labels, width)
    if key not in _TABLES:
        grids = np.meshgrid(*[np.arange(n_labels)] * width, indexing="ij")
        _TABLES[key] = np.stack([g.reshape(-1) for g in grids], 1)
    return _TABLES[key]


def _potts_structure(pair: np.ndarray):
    """``(beta, exceptions)`` if ``pair`` is a Potts table ``beta (1 - I)`` except for a few
    smaller entries ``(a, l, value)`` (Co-Mixup's half-half labels), else None."""
    key = ("potts", pair.shape, pair.tobytes())
    if key not in _TABLES:
        _TABLES[key] = _find_potts(pair)
    return _TABLES[key]


def _find_potts(pair: np.ndarray):
    ll = pair.shape[0]
    if ll < 2 or np.any(np.diag(pair) != 0):
        return None
    beta = pair[~np.eye(ll, dtype=bool)].max()
    rows, cols = np.nonzero((pair != beta) & ~np.eye(ll, dtype=bool))
    if len(rows) > 2 * ll:
        return None
    return beta, [(a, l, pair[a, l]) for a, l in zip(rows, cols)]


def _min_over_axis(v: np.ndarray, axis: int, pair: np.ndarray, potts) -> np.ndarray:
    """``min_a v[..., a (at axis), ...] + pair[a, l]`` with ``l`` replacing ``a``."""
    if potts is None:
        moved = v.swapaxes(axis, -1)[..., :, None] + pair            # (..., a, l)
        return moved.min(-2).swapaxes(axis, -1)
    beta, exceptions = potts
    best = np.minimum(v, v.min(axis, keepdims=True) + beta)
    for a, l, value in exceptions:
        at_l = (slice(None),) * axis + (l,)
        at_a = (slice(None),) * axis + (a,)
        np.minimum(best[at_l], v[at_a] + value, out=best[at_l])
    return best


def _argmin_above(v: np.ndarray, state: np.ndarray, col: int, pair: np.ndarray,
                  strides: np.ndarray) -> np.ndarray:
    """Backtracking: per problem, the label ``a`` of column ``col`` minimising
    ``v[state with a at col] + pair[a, state[col]]`` (``v`` (N, S) flat, ``state`` (N, W))."""
    base = state @ strides - state[:, col] * strides[col]
    idx = base[:, None] + np.arange(pair.shape[0])[None, :] * strides[col]
    return (np.take_along_axis(v, idx, 1) + pair[:, state[:, col]].T).argmin(1)


def solve_rows_dp(unary: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Exact minimiser (N, H, W) int64 of :func:`grid_energy` by a row dynamic program."""
    n, height, width, ll = unary.shape
    states = _row_states(ll, width)                                   # (S, W)
    n_states = states.shape[0]
    horiz = pair[states[:, :-1], states[:, 1:]].sum(1)
    row_cost = sum(unary[:, :, c, states[:, c]] for c in range(width)) + horiz   # (N, H, S)
    value = row_cost[:, 0]
    rows = np.arange(n)
    if n_states <= 128:   # few states: one dense row-to-row step beats W column steps
        vert = pair[states[:, None, :], states[None, :, :]].sum(-1)          # (S_prev, S)
        choices = []
        for r in range(1, height):
            t = value[:, :, None] + vert
            choices.append(t.argmin(1))
            value = t.min(1) + row_cost[:, r]
        labels = np.empty((n, height), dtype=np.int64)
        labels[:, -1] = value.argmin(1)
        for r in range(height - 1, 0, -1):
            labels[:, r - 1] = choices[r - 1][rows, labels[:, r]]
        return states[labels]
    potts = _potts_structure(pair)
    shape = (n,) + (ll,) * width
    kept = []    # the values before each column step, for backtracking
    for r in range(1, height):
        v = value.reshape(shape)
        steps = []
        for c in range(width):   # column c of the new row: min over the label above it
            steps.append(v.reshape(n, -1))
            v = _min_over_axis(v, 1 + c, pair, potts)
        value = v.reshape(n, n_states) + row_cost[:, r]
        kept.append(steps)
    strides = ll ** np.arange(width - 1, -1, -1)
    labels = np.empty((n, height, width), dtype=np.int64)
    labels[:, height - 1] = states[value.argmin(1)]
    for r in range(height - 1, 0, -1):
        cur = labels[:, r].copy()
        for c in range(width - 1, -1, -1):
            cur[:, c] = _argmin_above(kept[r - 1][c], cur, c, pair, strides)
        labels[:, r - 1] = cur
    return labels


def solve_frontier_dp(unary: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Exact minimiser (N, H, W) int64 of :func:`grid_energy`, cell by cell."""
    n, height, width, ll = unary.shape
    potts = _potts_structure(pair)
    value = np.zeros((n,) + (ll,) * width)         # labels of the last W cells at axes 1..W
    kept = []
    for r in range(height):
        for c in range(width):
            if r > 0:
                kept.append(np.ascontiguousarray(value).reshape(n, -1))
                value = _min_over_axis(value, 1 + c, pair, potts)
            else:   # no cell above: that axis is still a dummy
                value = np.broadcast_to(value.take([0], axis=1 + c), value.shape)
                kept.append(None)
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
    for step in range(height * width - 1, -1, -1):
        r, c = divmod(step, width)
        labels[:, r, c] = frontier[:, c]
        if kept[step] is not None:
            frontier[:, c] = _argmin_above(kept[step], frontier, c, pair, strides)
    return labels


def solve_grid(unary: np.ndarray, pair: np.ndarray, max_states: int = 4096) -> np.ndarray:
    """Exact minimiser: the row DP when ``L**W <= max_states``, else the frontier DP."""
    ll, width = unary.shape[-1], unary.shape[2]
    if ll ** width <= max_states:
        return solve_rows_dp(unary, pair)
    return solve_frontier_dp(unary, pair)
