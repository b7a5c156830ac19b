"""RankMixup (Noh, Park, Lee & Ham, "RankMixup: Ranking-Based Mixup Training for Network
Calibration", ICCV 2023, arXiv:2308.11990; official code github.com/cvlab-yonsei/RankMixup:
``calibrate/losses/rankmixup.py``, ``calibrate/net/resnet_mixup.py`` (``forward_multimixup``,
``mixup_process``) and ``calibrate/engine/trainer.py``).

Mixed samples supervise calibration through *rankings* instead of mixed labels: a network
should be less confident on a mixture than on the raw image, and more confident on a
mixture the larger its mixing coefficient. One step on a batch ``x`` with labels ``y``::

    z       = f(x)                                   raw logits (B, K), one forward
    x~_m    = mixer(x, y),  m = 1..M                 M independent mixes (own lam_m, own pairing)
    z~_m    = f(x~_m)                                one forward of the M*B mixed images
    L       = CE(z, y) + w * L_rank                  (w = 0.1; no cross-entropy on the mixes)

Mixup ranking loss (MRL; ``ranking: mrl``, M = 1), on the maximum logit::

    L_MRL = mean_i  mixed_i * max(0, max_k z~_ik - max_k z_ik + margin)

where ``mixed_i`` is 1 when the mixed sample's label is really a mixture (its largest
target weight < 1) and 0 when the partner has the same class (or lam is 0 or 1): such a
"mixture" is a clean sample of one class and need not be less confident.

Mixup normalised discounted cumulative gain (M-NDCG; ``ranking: mndcg``, M = 3). Per raw
sample ``i``, the list ``[x_i, x~_i1, ..., x~_iM]`` has relevances ``r = [1, r_1, ..., r_M]``
(``r_m`` = the largest label weight of mix m, ``max(lam_m, 1 - lam_m)`` for two classes)
and confidences ``c = [max_k p_ik, max_k p~_i1k, ...]`` (softmax). With the mixes sorted by
decreasing relevance (the raw sample first, ``r = 1`` is the largest) and the discounts
``d_j = 1 / log2(j + 1)``, ``j = 1..M+1``::

    DCG  = sum_j c_(j) d_j,     IDCG = sum_j r_(j) d_j       (both in the relevance order)
    NDCG = DCG / IDCG  if IDCG > DCG  else  IDCG / DCG        (<= 1, 1 when c matches r)
    L_M-NDCG = mean_i (1 - NDCG_i)

so the confidences are pushed towards the mixing coefficients, in their order.

Published setting (official ``configs/model/resnet50_mixup.yaml``, ``configs/loss/mrl.yaml``,
``configs/loss/mndcg.yaml``, ``train_cifar.sh``): Mixup alpha 2 on CIFAR-10 (1 on
Tiny-ImageNet), one lam per mix and a uniform random pairing, input mixing (``layer_mix:
0``); loss weight 0.1; M-NDCG with 3 mixes, MRL with 1 mix and margin 2.0 (1.0 on
Tiny-ImageNet); ResNet-50, SGD lr 0.1, 200 epochs. ``configs/methods/rankmixup.yaml``
(M-NDCG, the paper's best) and ``rankmixup_mrl.yaml`` hold them.

What the official code does differently:

* MRL's mask: the official ``self_mixup_mask`` has shape (B,) and the hinge (B, 1), so
  their product broadcasts to (B, B) and its mean is ``mean(mask) * mean(hinge)``: every
  sample's hinge counts, scaled by the fraction of truly mixed samples.
  ``mrl_reduction: sample`` (default) masks each sample as the code intends;
  ``mrl_reduction: official`` reproduces the product of means. The official mask also tests
  the target for an exact 1.0 in float32 (``lam + (1 - lam)`` may round below 1); here a
  weight within 1e-6 of 1 counts as unmixed.
* MRL with more than one mix fails in the official code (shapes (B, 1) and (M*B, 1)); here
  each mix is ranked against its raw sample.
* M-NDCG sorts the mixes with a stable sort (``torch.argsort`` is unstable on ties: equal
  relevances could be ordered differently run to run; their DCG terms then differ).
* The official training clips the gradient norm at 2 (``train.clip_grad_norm``): that is
  the recipe's ``optim_wrapper.clip_grad``, not part of the method.
* The raw term uses the recipe's loss module (plain cross-entropy unless the recipe sets
  label smoothing); the official code is plain cross-entropy. The feature-level variant
  (``layer_mix: 4``) is not provided: hidden-stage mixers are refused.
* Any input mixer may make the mixes (soft targets count through their largest weight).

Cost: one forward of the raw batch and one of the M mixed copies (M = 3: four batches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_choice, check_number, is_int_at_least
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier

RANKINGS = ("mndcg", "mrl")
MRL_REDUCTIONS = ("sample", "official")
#: a label weight this close to 1 is an unmixed sample (float32 ``lam + (1 - lam)``)
UNMIXED_TOL = 1e-6
#: the paper's number of mixes per ranking loss
DEFAULT_MIXES = {"mndcg": 3, "mrl": 1}


def mixup_ranking_loss(
    raw_logits: Tensor, mixed_logits: Tensor, relevance: Tensor, margin: float, reduction: str = "sample"
) -> Tensor:
    """MRL: ``raw_logits`` (B, K), ``mixed_logits`` (M, B, K), ``relevance`` (M, B) the largest
    label weight of each mix. The hinge ``max(0, max z~ - max z + margin)`` of the truly mixed
    samples (relevance < 1), averaged over all M*B mixes (``sample``), or the official product
    ``mean(mixed) * mean(hinge)`` (``official``)."""
    hinge = F.relu(mixed_logits.amax(2) - raw_logits.amax(1)[None] + margin)
    mixed = (relevance < 1 - UNMIXED_TOL).to(hinge.dtype)
    if reduction == "official":
        return mixed.mean() * hinge.mean()
    return (mixed * hinge).mean()


def mndcg(raw_conf: Tensor, mixed_conf: Tensor, relevance: Tensor) -> Tensor:
    """The M-NDCG (B,) of the lists ``[raw, mix_1..mix_M]``: ``raw_conf`` (B,), ``mixed_conf``
    and ``relevance`` (B, M); the raw sample has relevance 1 and comes first, the mixes
    follow in decreasing relevance (stable order on ties)."""
    order = torch.argsort(relevance, dim=1, descending=True, stable=True)
    conf = torch.cat([raw_conf[:, None], mixed_conf.gather(1, order)], 1)
    rel = torch.cat([torch.ones_like(raw_conf)[:, None], relevance.gather(1, order)], 1)
    positions = torch.arange(2, conf.shape[1] + 2, device=conf.device, dtype=conf.dtype)
    discount = 1 / torch.log2(positions)
    dcg, idcg = (conf * discount).sum(1), (rel * discount).sum(1)
    return torch.where(idcg > dcg, dcg / idcg, idcg / dcg)


@MODELS.register_module()
class RankMixupClassifier(MixupClassifier):
    """RankMixup: cross-entropy on the raw batch plus a ranking loss between the raw
    samples and ``num_mixes`` mixed copies (module docstring: the formulas, the published
    setting and the official code's differences).

    Args:
        backbone, head, neck, loss, data_preprocessor: see :class:`MixupClassifier`;
            ``loss`` is the raw batch's cross-entropy.
        mixer: an input mixer that makes each mix (default Mixup alpha 2.0, the CIFAR
            setting); called ``num_mixes`` times per step, each draw its own lam and pairing.
        ranking: ``mndcg`` (default, M-NDCG) or ``mrl`` (mixup ranking loss).
        num_mixes: mixes per step, ``M`` (default: 3 for M-NDCG, 1 for MRL, the paper's).
        weight: weight ``w`` of the ranking loss (0.1).
        margin: MRL's margin in logit units (2.0, the CIFAR setting; 1.0 Tiny-ImageNet).
        mrl_reduction: ``sample`` (default) or ``official`` (the official broadcast, see above).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        mixer: dict | None = None,
        ranking: str = "mndcg",
        num_mixes: int | None = None,
        weight: float = 0.1,
        margin: float = 2.0,
        mrl_reduction: str = "sample",
        **kwargs,
    ):
        super().__init__(
            backbone=backbone,
            head=head,
            mixer=mixer if mixer is not None else {"type": "Mixup", "alpha": 2.0},
            **kwargs,
        )
        self.ranking = check_choice(ranking, RANKINGS, "RankMixupClassifier.ranking")
        if num_mixes is None:
            num_mixes = DEFAULT_MIXES[ranking]
        if not is_int_at_least(num_mixes, 1):
            raise ValueError(
                f"RankMixupClassifier.num_mixes must be an integer >= 1 (the paper: 3 for "
                f"M-NDCG, 1 for MRL), got {num_mixes!r}"
            )
        self.num_mixes = num_mixes
        self.weight = check_number(weight, "RankMixupClassifier.weight")
        self.margin = check_number(margin, "RankMixupClassifier.margin")
        self.mrl_reduction = check_choice(mrl_reduction, MRL_REDUCTIONS, "RankMixupClassifier.mrl_reduction")

    def mixes(self, inputs: Tensor, labels: Tensor) -> list:
        """The ``num_mixes`` MixOutputs of one step, each drawn anew from the mixer."""
        outs = [self.mixer(inputs, labels, model=self) for _ in range(self.num_mixes)]
        if any(out.stage_hook is not None for out in outs):
            raise ValueError(
                f"RankMixup ranks mixed input images against the raw ones; the hidden-stage "
                f"mixer {type(self.mixer).__name__} does not make them. Use an input mixer "
                "(Mixup, the published one; CutMix, ...)"
            )
        return outs

    def rank_loss(self, raw_logits: Tensor, mixed_logits: Tensor, relevance: Tensor) -> Tensor:
        """The ranking loss from raw (B, K) and mixed (M, B, K) logits and relevances (M, B)."""
        raw, mixed = raw_logits.float(), mixed_logits.float()
        if self.ranking == "mrl":
            return mixup_ranking_loss(raw, mixed, relevance, self.margin, self.mrl_reduction)
        conf = mndcg(raw.softmax(1).amax(1), mixed.softmax(2).amax(2).t(), relevance.t())
        return (1 - conf).mean()

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        raw_logits = self.logits(inputs)
        outs = self.mixes(inputs, labels)
        mixed = self.logits(torch.cat([o.inputs.to(inputs.dtype) for o in outs]))
        mixed = mixed.view(self.num_mixes, inputs.shape[0], -1)
        relevance = torch.stack([o.target(self.num_classes).float().amax(1) for o in outs])
        ce = self.loss_module(raw_logits, MixOutput.unmixed(inputs, labels))
        return {"loss": ce, "rank_loss": self.weight * self.rank_loss(raw_logits, mixed, relevance)}
