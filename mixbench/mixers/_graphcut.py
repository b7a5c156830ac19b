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

try:  # optional, faster max-flow (Boykov-Kolmogorov)
    import maxflow as _maxflow  # noqa: F401

    _HAVE_BK = True
except ImportError:
    _HAVE_BK = False

_CAPACITY_BUDGET = 2.0**29  # total of all finite capacities after scaling (int32 safe)


def chain_grid_energy(unary: np.ndarray, w_v: np.ndarray, w_h: np.ndarray, labels: np.ndarray) -> np.ndarray:
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
    return (
        data + (np.asarray(w_v, np.float64) * dv).sum((1, 2)) + (np.asarray(w_h, np.float64) * dh).sum((1, 2))
    )


def solve_chain_grid(
    unary: np.ndarray, w_v: np.ndarray, w_h: np.ndarray, backend: str = "auto"
) -> np.ndarray:
    """Exact minimiser (B, G, G') int64 of :func:`chain_grid_energy` (see module docstring).

    Negative edge weights would make the energy non-convex; they are clipped to 0.
    ``backend``: ``scipy`` (Dinic, integer capacities), ``pymaxflow`` (Boykov-Kolmogorov,
    float capacities, faster on these small grids: docs/benchmarks_puzzle_comixup.md;
    ``pip install PyMaxflow``) or ``auto`` (PyMaxflow when installed). Both give a global
    minimum.
    """
    if backend not in ("auto", "scipy", "pymaxflow"):
        raise ValueError(f"backend must be 'auto', 'scipy' or 'pymaxflow', got {backend!r}")
    unary = np.asarray(unary, dtype=np.float64)
    if unary.ndim != 4:
        raise ValueError(f"unary must be (B, G, G', L), got shape {unary.shape}")
    b, gh, gw, n_labels = unary.shape
    if n_labels < 2:
        return np.zeros((b, gh, gw), dtype=np.int64)
    w_v = np.clip(np.asarray(w_v, dtype=np.float64), 0.0, None)
    w_h = np.clip(np.asarray(w_h, dtype=np.float64), 0.0, None)
    if w_v.shape != (b, gh - 1, gw) or w_h.shape != (b, gh, gw - 1):
        raise ValueError(
            f"edge weights must be (B, G-1, G') and (B, G, G'-1) for unary "
            f"{unary.shape}, got {w_v.shape} and {w_h.shape}"
        )
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
                both = np.bincount(p, 2 * c, n_pix) + np.bincount(q, 2 * c, n_pix)
                lin[:, lo - 1] -= both
                lin[:, hi - 1] += both
    nodes = node(np.arange(n_pix)[:, None], np.arange(1, k + 1)[None, :])
    lin_flat, nodes_flat = lin.ravel(), nodes.ravel()
    pos = lin_flat > 0  # cost paid when x = 1 (source side): node -> sink
    src += [nodes_flat[pos], np.zeros((~pos).sum(), np.int64)]
    dst += [np.ones(pos.sum(), np.int64), nodes_flat[~pos]]
    cap += [lin_flat[pos], -lin_flat[~pos]]

    src_a, dst_a, cap_a = np.concatenate(src), np.concatenate(dst), np.concatenate(cap)
    chain = (nodes[:, 1:].ravel(), nodes[:, :-1].ravel())  # x_p,k+1 <= x_p,k: k+1 -> k, inf
    cut = _min_cut_bk if backend == "pymaxflow" or (backend == "auto" and _HAVE_BK) else _min_cut_scipy
    source_side = cut(2 + n_pix * k, src_a, dst_a, cap_a, chain)
    return source_side[nodes].sum(1).reshape(b, gh, gw).astype(np.int64)


def _min_cut_scipy(n_nodes, src, dst, cap, chain) -> np.ndarray:
    """Source side (bool, n_nodes) of a minimum s-t cut (s = 0, t = 1) by SciPy's Dinic."""
    total = cap.sum()
    scale = _CAPACITY_BUDGET / total if total > 0 else 1.0
    cap_i = np.rint(cap * scale).astype(np.int64)
    inf = int(cap_i.sum()) + 1
    src = np.concatenate([src, chain[0]])
    dst = np.concatenate([dst, chain[1]])
    cap_i = np.concatenate([cap_i, np.full(len(chain[0]), inf, np.int64)])
    keep = cap_i > 0
    graph = sparse.coo_matrix(
        (cap_i[keep].astype(np.int32), (src[keep], dst[keep])), shape=(n_nodes, n_nodes)
    ).tocsr()
    flow = csgraph.maximum_flow(graph, 0, 1).flow
    residual = (graph - flow).tocsr()  # flow is antisymmetric: reverse edges gain capacity
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = csgraph.breadth_first_order(residual, 0, directed=True, return_predecessors=False)
    source_side = np.zeros(n_nodes, dtype=bool)
    source_side[reached] = True
    return source_side


def _min_cut_bk(n_nodes, src, dst, cap, chain) -> np.ndarray:
    """Source side (bool, n_nodes) of a minimum s-t cut by PyMaxflow (Boykov-Kolmogorov)."""
    import maxflow

    inner = (src > 1) & (dst > 1)
    graph = maxflow.Graph[float](n_nodes - 2, int(inner.sum()) + len(chain[0]))
    ids = graph.add_nodes(n_nodes - 2)
    graph.add_edges(src[inner] - 2, dst[inner] - 2, cap[inner], np.zeros(int(inner.sum())))
    inf = float(cap.sum()) + 1.0
    graph.add_edges(chain[0] - 2, chain[1] - 2, np.full(len(chain[0]), inf), np.zeros(len(chain[0])))
    to_source = np.bincount(dst[src == 0] - 2, cap[src == 0], n_nodes - 2)
    to_sink = np.bincount(src[dst == 1] - 2, cap[dst == 1], n_nodes - 2)
    graph.add_grid_tedges(ids, to_source, to_sink)
    graph.maxflow()
    source_side = np.zeros(n_nodes, dtype=bool)
    source_side[0] = True
    source_side[2:] = ~graph.get_grid_segments(ids)
    return source_side
