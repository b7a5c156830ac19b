"""AlignMix (Venkataramanan et al., "AlignMixup: Improving Representations By Interpolating
Aligned Features", CVPR 2022).

Let ``A, A'`` (C x r, r = h*w positions) be the last-stage feature maps of ``x_i`` and of its
partner ``x_j`` (``j = index[i]``). The cost ``M_kl = ||a_k - a'_l||^2`` between positions
gives the entropic optimal transport plan ``P* = argmin <P, M> - eps H(P)`` with uniform
marginals ``1/r`` (Sinkhorn-Knopp), and the assignment matrix ``R = r P*`` (rows and columns
sum to one). Either

* the partner is aligned to ``x_i``: ``A~ = A' R^T`` (the partner's features moved to
  ``x_i``'s positions) and the features become ``lam * A + (1 - lam) * A~``; or
* ``x_i`` is aligned to the partner: ``A~' = A R`` and the features become
  ``lam * A~' + (1 - lam) * A'``;

both with label ``lam * y_i + (1 - lam) * y_j``, ``lam ~ Beta(alpha, alpha)``. The plan is a
constant (no gradient flows through it); gradients reach both images through ``A`` and
``A'``. As in the official code (github.com/shashankvkt/AlignMixup_CVPR22), each batch picks
the direction uniformly at random and, with probability ``input_prob = 0.5``, mixes the
input images instead (plain Mixup), the two choices of its ``layer_mix`` and ``align_mix``.
The cost is on the raw features, as there. Against squared distances of unnormalised
features (tens to hundreds) ``eps = 0.1`` makes the problem nearly unregularised and
Sinkhorn converges slowly: for a freshly initialised ResNet-8 on digits the row marginals of
the 100th iterate are still 0.50 from uniform in L1 (0.03 after 500 iterations); its column
sums are exact (the last update is the column one).

Stopping: by default Sinkhorn runs until the marginals are within ``tol`` of uniform or
``max_iter`` iterations, which is the paper's plan ``P*`` as closely as 100 iterations get.
The official code (and OpenMixup's copy) instead stops as soon as the row potentials move by
less than 0.1 in one iteration: after 2-3 iterations on the features of freshly initialised
width-16 ResNet-18s (batches of 32 CIFAR-size inputs), all 100 on a ResNet-8's.
``official_stop=True`` reproduces that rule, and then this module's output equals the
official ``mixup_aligned`` to a relative difference of at most 3e-6 in those cases (checked
side by side on CPU; the official code is not part of mixbench).

Published defaults: alpha = 2, eps = 0.1, max_iter = 100. OpenMixup's version mixes at the
feature level only: ``input_prob=0`` reproduces it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._feature_mix import StageHook, backbone_num_stages
from ._sinkhorn import sinkhorn_plan
from .base import BaseMixer, MixOutput
from .checks import check_choice, check_flag, check_number, check_prob, is_int_at_least
from .kernels import lerp_images, match_format

ALIGNS = ("random", "partner", "self")
OFFICIAL_POTENTIAL_TOL = 0.1  # the official code's Sinkhorn stopping threshold


def assignment_matrix(
    feat: Tensor,
    partner: Tensor,
    eps: float = 0.1,
    max_iter: int = 100,
    tol: float = 1e-4,
    potential_tol: float = 0.0,
) -> Tensor:
    """``R = r P*`` (B, r, r), float32, no gradient: row ``k`` holds the weights with which
    the partner's positions are matched to position ``k`` of ``feat`` (both (B, C, h, w))."""
    a = feat.detach().flatten(2).transpose(1, 2).float()  # (B, r, C)
    a2 = partner.detach().flatten(2).transpose(1, 2).float()
    cost = torch.cdist(a, a2).square()
    return sinkhorn_plan(cost, eps, max_iter, tol, potential_tol=potential_tol) * a.shape[1]


def aligned_mix(
    feat: Tensor,
    partner: Tensor,
    lam: Tensor,
    align_partner: bool,
    eps: float = 0.1,
    max_iter: int = 100,
    tol: float = 1e-4,
    potential_tol: float = 0.0,
) -> Tensor:
    """AlignMix of two batches of feature maps (B, C, h, w) with per-sample ``lam`` (B,).

    ``align_partner=True``: ``lam * A + (1 - lam) * A' R^T``; False: ``lam * A R + (1 - lam) * A'``.
    """
    b, c, h, w = feat.shape
    r_mat = assignment_matrix(feat, partner, eps, max_iter, tol, potential_tol).to(feat.dtype)
    a, a2 = feat.reshape(b, c, h * w), partner.reshape(b, c, h * w)
    lam_a = lam.to(device=feat.device, dtype=feat.dtype).view(-1, 1, 1)
    lam_b = (1 - lam).to(device=feat.device, dtype=feat.dtype).view(-1, 1, 1)
    if align_partner:
        mixed = a * lam_a + torch.bmm(a2, r_mat.transpose(1, 2)) * lam_b
    else:
        mixed = torch.bmm(a, r_mat) * lam_a + a2 * lam_b
    return match_format(mixed.view(b, c, h, w), feat)


class AlignMix(BaseMixer):
    """Mixup of optimal-transport-aligned last-stage feature maps.

    Returns the clean batch in ``inputs`` and a ``stage_hook`` acting at the backbone's last
    stage (``model.backbone.num_stages``), or at stage 0 (the input) for the batches mixed
    in input space; ``y_a``, ``y_b``, ``lam``, ``index`` are those of Mixup.

    Args:
        alpha: Beta(alpha, alpha) concentration, default 2.0.
        eps: Sinkhorn entropic regularisation, default 0.1.
        max_iter: Sinkhorn iterations at most, default 100.
        tol: early stop of Sinkhorn once the plan's marginals are within ``tol`` (L1) of
            uniform, default 1e-4; 0 runs all ``max_iter`` iterations.
        official_stop: use the official code's stopping rule instead (row potentials moved
            by less than 0.1), default False (see the module docstring).
        align: ``random`` (default, the official code: one of the two per batch),
            ``partner`` (``lam * A + (1 - lam) * A' R^T``) or ``self``
            (``lam * A R + (1 - lam) * A'``).
        input_prob: probability that a batch is mixed at the input instead (plain Mixup
            with the same lam and pairing), default 0.5 as in the official code; 0 gives
            OpenMixup's feature-only version.
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`.
    """

    needs_model = True
    requires = ("feature_map:last",)

    def __init__(
        self,
        alpha: float = 2.0,
        eps: float = 0.1,
        max_iter: int = 100,
        tol: float = 1e-4,
        official_stop: bool = False,
        align: str = "random",
        input_prob: float = 0.5,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, generator=generator)
        self.eps = check_number(eps, "eps (Sinkhorn regularisation)", strict=True)
        if not is_int_at_least(max_iter, 1):
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        self.max_iter = max_iter
        self.tol = check_number(tol, "tol (0 = always run max_iter iterations)")
        self.official_stop = check_flag(official_stop, "official_stop")
        self.align = check_choice(align, ALIGNS, "align")
        self.input_prob = check_prob(input_prob, "input_prob")

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        last = backbone_num_stages(model, type(self).__name__)
        index = self.sample_index(x.shape[0])
        lam = self.sample_lam(index)
        index = index.to(x.device)
        u_input, u_side = torch.rand(2, generator=self.generator, dtype=torch.float64).tolist()
        at_input = u_input < self.input_prob
        align_partner = u_side < 0.5 if self.align == "random" else self.align == "partner"

        if at_input:

            def mix_features(feat: Tensor) -> Tensor:
                return lerp_images(feat, index, lam)

            stage = 0
        else:

            def mix_features(feat: Tensor) -> Tensor:
                return aligned_mix(
                    feat,
                    feat[index],
                    lam,
                    align_partner,
                    self.eps,
                    self.max_iter,
                    0.0 if self.official_stop else self.tol,
                    OFFICIAL_POTENTIAL_TOL if self.official_stop else 0.0,
                )

            stage = last
        return MixOutput(
            inputs=x,
            y_a=y,
            y_b=y[index],
            lam=lam.to(device=x.device, dtype=torch.float32),
            index=index,
            stage_hook=StageHook(stage, mix_features),
        )
