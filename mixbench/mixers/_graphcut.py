"""Exact minimisation of convex multi-label energies on 4-connected grids, batched.

Solves, for every grid ``b`` of a batch independently,

    l* = argmin_l  sum_p U[b, p, l_p]
                 + sum_{p~q vertical}   Wv[b, p] * (l_p - l_q)^2 / (L - 1)^2
                 + sum_{p~q horizontal} Wh[b, p] * (l_p - l_q)^2 / (L - 1)^2

over labels ``l_p`` in ``{0, ..., L-1}`` with non-negative edge weights. The pairwise term is
a convex function of the (ordered) label difference, so the problem is solved *exactly* by a
single s-t minimum cut of Ishikawa's layered graph (H. Ishikawa, "Exact optimization for
Markov random fields with convex priors", TPAMI 2003): every pixel gets a chain of ``L-1``
binary nodes ``x_pk = [l_p >= k]`` held monotone by infinite edges, and

    (l_p - l_q)^2 = sum_k [x_pk != x_qk] + 2 sum_{k<j} (x_pk - x_qk)(x_pj - x_qj)

splits into cut edges (``[x_pk != x_qk]``, ``-x_pk x_qj``: submodular) plus linear terms.
All grids of the batch form one disjoint graph solved by one call of SciPy's
:func:`scipy.sparse.csgraph.maximum_flow` (integer capacities: energies are scaled to about
2**29 in total, so the rounding error is about 1e-9 of the batch's energy). This is what
PuzzleMix's mask needs (``L = n_labels = 3``); the alpha-beta swap moves used by the
official code only reach a local minimum of the same energy.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

_CAPACITY_BUDGET = 2.0**29  # total of all finite capacities after scaling (int32 safe)


def chain_grid_energy(unary: np.ndarray, w_v: np.ndarray, w_h: np.ndarray,
                      labels: np.ndarray) -> np.ndarray:
    """The energy of ``labels`` (B, G, G') under the model above, in float64, shape (B,).

    ``unary`` is (B, G, G', L); ``w_v`` (B, G-1, G') weighs vertical neighbours
    ``(r, c)-(r+1, c)``; ``w_h`` (B, G, G'-1) horizontal neighbours ``(r, c)-(r, c+1)``.
    """
    unary = np.asarray(unary, dtype=np.float64)
    n_labels = unary.shape[-1]
    labels = np.asarray(labels, dtype=np.int64)
    data = np.take_along_axis(unary, labels[..., None], axis=-1)[..., 0].sum((1, 2))
    norm = float(max(n_labels - 1, 1)) ** 2
    dv = (labels[:, 1:, :] - labels[:, :-1, :]).astype(np.float64) ** 2 / norm
    dh = (labels[:, :, 1:] - labels[:, :, :-1]).astype(np.float64) ** 2 / norm
    return data + (np.asarray(w_v, np.float64) * dv).sum((1, 2)) + \
        (np.asarray(w_h, np.float64) * dh).sum((1, 2))


def solve_chain_grid(unary: np.ndarray, w_v: np.ndarray, w_h: np.ndarray) -> np.ndarray:
    """Exact minimiser (B, G, G') int64 of :func:`chain_grid_energy` (see module docstring).

    Negative edge weights would make the energy non-convex; they are clipped to 0.
    """
    unary = np.asarray(unary, dtype=np.float64)
    if unary.ndim != 4:
        raise ValueError(f"unary must be (B, G, G', L), got shape {unary.shape}")
    b, gh, gw, n_labels = unary.shape
    if n_labels < 2:
        return np.zeros((b, gh, gw), dtype=np.int64)
    w_v = np.clip(np.asarray(w_v, dtype=np.float64), 0.0, None)
    w_h = np.clip(np.asarray(w_h, dtype=np.float64), 0.0, None)
    if w_v.shape != (b, gh - 1, gw) or w_h.shape != (b, gh, gw - 1):
        raise ValueError(f"edge weights must be (B, G-1, G') and (B, G, G'-1) for unary "
                         f"{unary.shape}, got {w_v.shape} and {w_h.shape}")
    k = n_labels - 1  # binary nodes per pixel
    n_pix = b * gh * gw
    pix = np.arange(n_pix).reshape(b, gh, gw)

    def node(p, level):  # level in 1..k; nodes 0 and 1 are source and sink
        return 2 + p * k + (level - 1)

    # linear coefficient of each binary node x_pk, from the unary differences
    lin = (unary[..., 1:] - unary[..., :-1]).reshape(n_pix, k).copy()
    src, dst, cap = [], [], []
    norm = float(k) ** 2
    for w, p, q in ((w_v, pix[:, :-1, :], pix[:, 1:, :]), (w_h, pix[:, :, :-1], pix[:, :, 1:])):
        c = (w / norm).ravel()
        p, q = p.ravel(), q.ravel()
        for level in range(1, k + 1):  # [x_pk != x_qk], both directions
            src += [node(p, level), node(q, level)]
            dst += [node(q, level), node(p, level)]
            cap += [c, c]
        for lo in range(1, k + 1):
            for hi in range(lo + 1, k + 1):  # 2(x_p,lo - x_q,lo)(x_p,hi - x_q,hi)
                src += [node(p, lo), node(q, lo)]
                dst += [node(q, hi), node(p, hi)]
                cap += [2 * c, 2 * c]
                np.add.at(lin, (p, lo - 1), -2 * c)
                np.add.at(lin, (q, lo - 1), -2 * c)
                np.add.at(lin, (p, hi - 1), 2 * c)
                np.add.at(lin, (q, hi - 1), 2 * c)
    nodes = node(np.arange(n_pix)[:, None], np.arange(1, k + 1)[None, :])
    lin_flat, nodes_flat = lin.ravel(), nodes.ravel()
    pos = lin_flat > 0  # cost paid when x = 1 (source side): node -> sink
    src += [nodes_flat[pos], np.zeros((~pos).sum(), np.int64)]
    dst += [np.ones(pos.sum(), np.int64), nodes_flat[~pos]]
    cap += [lin_flat[pos], -lin_flat[~pos]]

    src_a, dst_a, cap_a = np.concatenate(src), np.concatenate(dst), np.concatenate(cap)
    total = cap_a.sum()
    scale = _CAPACITY_BUDGET / total if total > 0 else 1.0
    cap_i = np.rint(cap_a * scale).astype(np.int64)
    if k > 1:  # monotone chains: x_p,k+1 <= x_p,k (infinite edge k+1 -> k)
        inf = int(cap_i.sum()) + 1
        src_a = np.concatenate([src_a, nodes[:, 1:].ravel()])
        dst_a = np.concatenate([dst_a, nodes[:, :-1].ravel()])
        cap_i = np.concatenate([cap_i, np.full(n_pix * (k - 1), inf, np.int64)])
    n_nodes = 2 + n_pix * k
    keep = cap_i > 0
    graph = sparse.coo_matrix((cap_i[keep].astype(np.int32), (src_a[keep], dst_a[keep])),
                              shape=(n_nodes, n_nodes)).tocsr()
    flow = csgraph.maximum_flow(graph, 0, 1).flow
    residual = (graph - flow).tocsr()  # flow is antisymmetric: reverse edges gain capacity
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = csgraph.breadth_first_order(residual, 0, directed=True, return_predecessors=False)
    source_side = np.zeros(n_nodes, dtype=bool)
    source_side[reached] = True
    return source_side[nodes].sum(1).reshape(b, gh, gw).astype(np.int64)
