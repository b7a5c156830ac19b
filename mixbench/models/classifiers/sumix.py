"""SUMix (Qin, Jin, Zhu, Liao, El-Yacoubi, Gao, "SUMix: Mixup with Semantic and Uncertain
Information", ECCV 2024, arXiv:2407.07805; official code github.com/JinXins/SUMix, an
OpenMixup fork: ``ClsUncertainMixupHead.IN_loss`` and ``MixUpClassification(is_IN=True)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_choice, check_flag, check_number
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier

LABEL_WEIGHTINGS = ("sample", "batch_mean")


def semantic_distance(p_mix: Tensor, p_own: Tensor, drop: Tensor, scale: float) -> Tensor:
    """SUMix's per-class semantic distance (B, K) between mixed and original predictions.

    ``p_mix`` (B, K) are the mixed images' class probabilities, ``p_own`` (B, K) those of the
    clean component, ``drop`` (B,) the class of the *other* component, whose probability is
    zeroed in ``p_own`` first (so the other image's class does not count as distance)::

        q = p_own;  q[drop] = 0
        alpha = scale * softmax(p_mix - q) / || softmax(p_mix - q) ||_2
    """
    own = p_own.scatter(1, drop[:, None], 0.0)
    d = (p_mix - own).softmax(1)
    return scale * d / d.norm(dim=1, keepdim=True)


def sumix_lambda(lam: Tensor, dist_a: Tensor, dist_b: Tensor) -> Tensor:
    """SUMix's label weight of the first image (B,), from the drawn weight ``lam`` (B,) and
    the semantic distances ``dist_a``, ``dist_b`` (B,) of the mixed image to each component
    at that component's class::

        lam_hat = lam e^{-dist_a} / (lam e^{-dist_a} + (1 - lam) e^{-dist_b})

    computed as ``sigmoid(log lam - log(1 - lam) - dist_a + dist_b)``, the same value
    without the underflow of ``e^{-dist}`` (distances reach the batch size; the official
    code's direct quotient gives 0/0 there). ``lam`` 0 or 1 stays 0 or 1.
    """
    lam = lam.double()
    logit = lam.log() - (1 - lam).log() - dist_a.double() + dist_b.double()
    return torch.sigmoid(logit).float()


def l2_normalize(x: Tensor) -> Tensor:
    """Rows divided by their Euclidean norm (the official ``l2_norm``; no epsilon: a softmax
    row is never zero)."""
    return x / x.norm(dim=1, keepdim=True)


@MODELS.register_module()
class SUMixClassifier(MixupClassifier):
    """SUMix: the label weights of a cutting mix follow how much of each image's semantics
    the mixed image keeps, and an uncertainty term regularises the features.

    Paper: Qin, Jin, Zhu, Liao, El-Yacoubi, Gao, "SUMix: Mixup with Semantic and Uncertain
    Information", ECCV 2024 (arXiv:2407.07805). A plug-in for any pairwise input mixer
    (published with CutMix, SaliencyMix, FMix and ResizeMix). One step, with partner
    ``j = index[i]``, ``a = y_a[i]``, ``b = y_b[i]``, drawn weight ``lam``::

        z, f    = head(x), features(x)            clean batch, a second forward (train mode)
        z~, f~  = head(x~), features(x~)           the mixer's batch
        p, p~   = softmax(z), softmax(z~)          detached: the semantics
        alpha_a = s * normalize(softmax(p~_i - p_i  with p_i[b] = 0))     (K,)
        alpha_b = s * normalize(softmax(p~_i - p_j  with p_j[a] = 0))     (K,)
        lam^    = lam e^{-alpha_a[a]} / (lam e^{-alpha_a[a]} + (1 - lam) e^{-alpha_b[b]})
        u, u~   = normalize(softmax(U f)), normalize(softmax(U f~))      uncertainty, U linear
        beta_a  = u_i + u~_i,   beta_b = u_j + u~_i
        L = lam^ CE(z~, a) + (1 - lam^) CE(z~, b)                         mix-ratio learning
          + gamma [lam CE(e^{-(alpha_a + beta_a)}, a) + (1 - lam) CE(e^{-(alpha_b + beta_b)}, b)]

    averaged over the batch (``normalize`` divides by the L2 norm; ``CE(v, c)`` is the
    cross-entropy of the vector ``v`` used as logits). The semantic distance ``alpha`` is
    small at class ``a`` when the mixed image is still predicted like image ``a``, which
    then gets more label weight. The second term trains ``U`` and the features through
    ``beta``, on the clean and the mixed forward; ``alpha`` carries no gradient.

    Published setting (official configs, e.g. ``cifar100/mixups/uncertain/r18_mixups_none.py``):
    CutMix alpha 0.2 on CIFAR-100 / Tiny-ImageNet / CUB / Aircraft, gamma 0.5 (1.0 on
    Tiny-ImageNet), the uncertainty layer on (``is_norm=True``), SGD lr 0.1, 800 epochs on
    CIFAR-100 (``configs/methods/sumix.yaml``).

    What the official code does differently (both selectable here):

    * ``distance_scale``: the official code multiplies the normalised distance by the
      batch size (``avg_factor``), so lam^ depends on the batch size; ``None`` (default)
      does the same, a number fixes ``s``.
    * ``label_weighting``: the official first term multiplies the batch-mean
      cross-entropies by the batch means of lam^ (``mean(CE_a) * mean(lam^) +
      mean(CE_b) * mean(1 - lam^)``: its loss reduces before weighting); ``sample``
      (default) weights each sample's cross-entropy by its own lam^ as the paper writes,
      ``batch_mean`` reproduces the official product of means.
    * lam^ is computed as a sigmoid of log-odds (same value; no 0/0 when both exponentials
      underflow, which the official quotient hits with large distances).
    * The uncertainty layer starts from PyTorch's default ``nn.Linear`` initialisation, as
      mixbench's ``LinearHead`` (the official head draws N(0, 0.01)).
    * Per-sample lambdas (``lam_mode: elem``) are allowed; the official lambda is one per batch.

    Cost: one extra forward and backward of the clean batch per step (the paper's own).

    Args:
        backbone, head, neck, loss, data_preprocessor: see :class:`MixupClassifier`;
            ``loss`` must be ``MixedCrossEntropy`` (its label smoothing applies to both terms).
        mixer: a pairwise input mixer (default CutMix alpha 0.2); feature-space mixers and
            mixers with soft targets are refused.
        gamma: weight of the uncertainty term (default 0.5).
        uncertainty_layer: the linear uncertainty branch ``U`` (default True); False uses the
            logits themselves as ``beta``'s input, unnormalised (official ``is_norm=False``).
        distance_scale: ``s`` (None: the batch size, as the official code).
        label_weighting: ``sample`` (default) or ``batch_mean`` (official reduction).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        mixer: dict | None = None,
        gamma: float = 0.5,
        uncertainty_layer: bool = True,
        distance_scale: float | None = None,
        label_weighting: str = "sample",
        **kwargs,
    ):
        super().__init__(
            backbone=backbone,
            head=head,
            mixer=mixer if mixer is not None else {"type": "CutMix", "alpha": 0.2},
            **kwargs,
        )
        if type(self.loss_module).__name__ != "MixedCrossEntropy":
            raise ValueError(
                f"SUMixClassifier weights its own cross-entropies: model.loss must be "
                f"MixedCrossEntropy (label smoothing allowed), got {type(self.loss_module).__name__}"
            )
        self.gamma = check_number(gamma, "SUMixClassifier.gamma")
        self.distance_scale = (
            None
            if distance_scale is None
            else check_number(distance_scale, "SUMixClassifier.distance_scale", strict=True)
        )
        self.label_weighting = check_choice(
            label_weighting, LABEL_WEIGHTINGS, "SUMixClassifier.label_weighting"
        )
        self.uncertainty = None
        if check_flag(uncertainty_layer, "SUMixClassifier.uncertainty_layer"):
            if not isinstance(getattr(self.head, "fc", None), nn.Linear):
                raise ValueError(
                    f"SUMixClassifier's uncertainty layer takes the head's input features; "
                    f"it needs a LinearHead (a head with a linear .fc), got {type(self.head).__name__}"
                )
            self.uncertainty = nn.Linear(self.head.fc.in_features, self.num_classes)

    def forward_both(self, inputs: Tensor) -> tuple:
        """Logits (B, K) and uncertainty vectors (B, K) of a batch, in one forward."""
        feats = self.neck(self.backbone(inputs))
        logits = self.head(feats)
        if self.uncertainty is None:
            return logits, logits
        return logits, l2_normalize(self.uncertainty(feats).float().softmax(1))

    def check_mix(self, out: MixOutput) -> None:
        if out.stage_hook is not None or out.soft_targets is not None:
            raise ValueError(
                f"SUMix reweights a two-image mix of the input images; the mixer "
                f"{type(self.mixer).__name__} mixes hidden features or returns soft targets. "
                "Use an input mixer such as CutMix, SaliencyMix, FMix or ResizeMix"
            )
        if not torch.equal(out.y_b, out.y_a[out.index]):
            raise ValueError(
                f"SUMix needs a pairwise mixer (y_b == y_a[index]); {type(self.mixer).__name__} is not one"
            )

    def weighted_ce(self, logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        """``weights * CE(logits, labels)`` averaged over the batch (``batch_mean``: the product
        of the two batch means, the official reduction)."""
        ce = F.cross_entropy(
            logits.float(), labels, reduction="none", label_smoothing=self.loss_module.label_smoothing
        )
        if self.label_weighting == "batch_mean":
            return ce.mean() * weights.mean()
        return (ce * weights).mean()

    def semantic_weights(self, clean_logits: Tensor, logits: Tensor, out: MixOutput) -> tuple:
        """``(lam_hat, alpha_a, alpha_b)`` of a mix (no gradient): the label weight (B,) of
        the first image and the semantic distances (B, K) to each component."""
        with torch.no_grad():
            p, p_mix = clean_logits.float().softmax(1), logits.float().softmax(1)
            scale = float(p.shape[0]) if self.distance_scale is None else self.distance_scale
            alpha_a = semantic_distance(p_mix, p, out.y_b, scale)
            alpha_b = semantic_distance(p_mix, p[out.index], out.y_a, scale)
            lam_hat = sumix_lambda(
                out.lam, alpha_a.gather(1, out.y_a[:, None])[:, 0], alpha_b.gather(1, out.y_b[:, None])[:, 0]
            )
        return lam_hat, alpha_a, alpha_b

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        clean_logits, u_clean = self.forward_both(inputs)
        out = self.mixer(inputs, labels, model=self)
        self.check_mix(out)
        logits, u_mix = self.forward_both(out.inputs)
        lam = out.lam.float()
        lam_hat, alpha_a, alpha_b = self.semantic_weights(clean_logits, logits, out)
        mix_loss = self.weighted_ce(logits, out.y_a, lam_hat) + self.weighted_ce(logits, out.y_b, 1 - lam_hat)
        beta_a = u_clean.float() + u_mix.float()
        beta_b = u_clean.float()[out.index] + u_mix.float()
        uncertain = self.weighted_ce(torch.exp(-(alpha_a + beta_a)), out.y_a, lam) + self.weighted_ce(
            torch.exp(-(alpha_b + beta_b)), out.y_b, 1 - lam
        )
        return {"loss": mix_loss, "uncertain_loss": self.gamma * uncertain}
