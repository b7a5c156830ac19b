"""Co-Mixup's compiled block-coordinate descent (:func:`sweep`), kept apart from
:mod:`mixbench.mixers.comixup` so that numba is imported (and the kernels loaded from its
cache, or compiled on a machine's first run) only when Co-Mixup actually solves, not by
``import mixbench.mixers``."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._grid_dp import row_pair_cost, rows_dp_into

_INF = 1e9
_SOFT_BONUS = 5e-4  # the official code's tie-break towards half-half labels


@njit(cache=True)
def _stable_order(keys, out):
    """``out`` = indices sorting ``keys`` ascending, ties by index (insertion sort: n is
    a partition size)."""
    for i in range(keys.shape[0]):
        j = i
        while j > 0 and keys[out[j - 1]] > keys[i]:
            out[j] = out[j - 1]
            j -= 1
        out[j] = i


@njit(cache=True)
def _local_objective(cost, z_o, others, beta, gamma):
    """The terms of the plain objective that depend on one output's labeling ``z_o``
    (m, m, n) given the other outputs' per-input mass ``others`` (n,) (``cost`` (n, m, m))."""
    m, _, n = z_o.shape
    data = 0.0
    smooth = 0.0
    div = 0.0
    for i in range(n):
        mass = 0.0
        for r in range(m):
            for c in range(m):
                v = z_o[r, c, i]
                data += cost[i, r, c] * v
                mass += v
                if r + 1 < m:
                    smooth += (v - z_o[r + 1, c, i]) ** 2
                if c + 1 < m:
                    smooth += (v - z_o[r, c + 1, i]) ** 2
        div += mass * others[i]
    return data + beta / 2 * smooth + 2 * gamma * div


@njit(cache=True)
def sweep(
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
    hard_thres,
    n_candidates,
    soft,
    monotone,
):
    """One coordinate-descent sweep over the outputs of every active partition, in place.

    ``z`` (P, O, m, m, n) labelings, ``counts`` (P, O, n) their per-input block mass,
    ``unary_base`` (P, m, m, n) and ``cost`` (P, n, m, m) the data costs, ``a_mat`` (P, n, n)
    the compatibility, ``add_cost`` (P, O, n) the resolve penalty. Each output in turn gets
    the exact best labeling of its modular subproblem over its candidate labels
    (:func:`~mixbench.mixers._grid_dp.rows_dp_into`); with ``monotone`` it is kept only if
    it lowers the plain objective.
    """
    n_parts, n_out, m, _, n = z.shape
    hard = min(n_candidates, n)
    use_soft = soft and hard >= 2
    n_labels = hard + 1 if use_soft else hard
    pair = beta * (1.0 - np.eye(n_labels))  # Potts
    if use_soft:  # the half-half label costs 0.25 beta next to its two components
        pair[hard, 0] = pair[hard, 1] = pair[0, hard] = pair[1, hard] = 0.25 * beta
    n_states = n_labels**m
    horiz = np.empty(n_states)
    row_pair_cost(pair, m, horiz)
    value, scratch = np.empty(n_states), np.empty(n_states)
    kept = np.empty((max(m - 1, 1), m, n_states))
    labels = np.empty((m, m), dtype=np.int64)
    unary, new = np.empty((m, m, n)), np.empty((m, m, n))
    u_all = np.empty((m, m, n_labels))
    others, extra, score, neg = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    ranked, used = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    cand = np.empty(hard, dtype=np.int64)
    for q in range(n_parts):
        if not active[q]:
            continue
        for o in range(n_out):
            for i in range(n):
                total = 0.0
                for k in range(n_out):
                    total += counts[q, k, i]
                others[i] = total - counts[q, o, i]
            for i in range(n):  # the linearised diversity term: a per-input cost
                ao = 0.0
                for j in range(n):
                    ao += a_mat[q, i, j] * others[j]
                over = 1.0 if ao > thres else 0.0
                modular = 2 * gamma * over * (ao if hard_thres else ao - thres)
                extra[i] = modular + gamma * add_cost[q, o, i]
            for i in range(n):
                score[i] = 0.0
            for r in range(m):
                for c in range(m):
                    low = np.inf
                    for i in range(n):
                        unary[r, c, i] = unary_base[q, r, c, i] + extra[i]
                        low = min(low, unary[r, c, i])
                    for i in range(n):  # candidates: lowest capped whole-grid cost
                        score[i] += min(unary[r, c, i] - low, 4 * beta)
            _stable_order(score, ranked)
            n_used = 0
            if use_soft:  # first the two inputs the output already uses most
                for i in range(n):
                    neg[i] = -counts[q, o, i]
                    if counts[q, o, i] > 0:
                        n_used += 1
                _stable_order(neg, used)
                cand[0], cand[1] = used[0], used[1]
                k = 2
                for i in range(n):
                    if k < hard and ranked[i] != used[0] and ranked[i] != used[1]:
                        cand[k] = ranked[i]
                        k += 1
            else:
                cand[:] = ranked[:hard]
            for r in range(m):
                for c in range(m):
                    for k in range(hard):
                        u_all[r, c, k] = unary[r, c, cand[k]]
                    if use_soft:  # the half-half label of the two most used
                        u_all[r, c, hard] = (
                            (u_all[r, c, 0] + u_all[r, c, 1]) / 2 - _SOFT_BONUS if n_used >= 2 else _INF
                        )
            rows_dp_into(u_all, pair, horiz, labels, value, scratch, kept)
            new[:] = 0.0
            for r in range(m):
                for c in range(m):
                    lab = labels[r, c]
                    if lab < hard:
                        new[r, c, cand[lab]] = 1.0
                    else:
                        new[r, c, cand[0]] = new[r, c, cand[1]] = 0.5
            if not monotone or (
                _local_objective(cost[q], new, others, beta, gamma)
                < _local_objective(cost[q], z[q, o], others, beta, gamma)
            ):
                z[q, o] = new
            for i in range(n):
                mass = 0.0
                for r in range(m):
                    for c in range(m):
                        mass += z[q, o, r, c, i]
                counts[q, o, i] = mass
