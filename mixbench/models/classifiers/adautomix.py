"""AdAutoMix (Qin, Jin, Jiang, El-Yacoubi, Gao, "Adversarial AutoMixup", ICLR 2024,
arXiv:2312.11954; official code github.com/JinXins/Adversarial-AutoMixup, also OpenMixup's
``AdAutoMix``): AutoMix's Mix Block becomes a generator of masks over up to ``mix_num``
images, trained *against* the classifier (it maximises the EMA classifier's mixed loss) on
alternate iterations, with a cosine-similarity term and the EMA teacher against collapse.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixers.base import MixOutput
from mixbench.mixers.kernels import match_format
from mixbench.mixers.sampling import beta_sample
from mixbench.registry import MODELS

from ..schedules import ValueSchedule
from .automix import FeatureMaskBlock, MixBlockClassifier


@MODELS.register_module()
class AdaptiveMaskBlock(FeatureMaskBlock):
    """AdAutoMix's generator ("AdaptiveMask" in the official code): per-pixel masks of ``N``
    images that are non-negative and sum to 1 at every pixel.

    With ``f_i = f[index_i]`` (B, C, h, w) the features of image ``i = 1..N`` (optionally
    with a constant channel ``lam_i`` appended), ``q_i = ReLU(W_q f_i)``, ``k_i = ReLU(W_k f_i)``
    (1x1 convs to ``d = C / reduction`` channels, with bias and ReLU as the official
    ``ConvModule``) and ``v_i = W_v f_i`` (1x1 conv to one channel)::

        A_i = softmax_cols( q_i^T (sum_{j != i} k_j) / sqrt(d) )    # (B, hw, hw): image i
                                                                   # attends to the others
        s_i = A_i v_i                                              # (B, hw, 1) mask logit
        M   = softmax over the N images of upsample(s_1..s_N)      # (B, N, H, W)

    (the sum of the logits ``q_i^T k_j`` over ``j != i`` is the official ``co_attn``; for two
    images it is ``q_1^T k_2`` and ``q_2^T k_1``). The attention runs in float32.

    Args:
        in_channels: channels of the feature map (256: stage 3 of a CIFAR ResNet-18).
        reduction: channel reduction of the query/key embedding (default 2).
        use_scale: divide the logits by ``sqrt(d)`` (default True).
        upsampling: ``bilinear`` (default, the published CIFAR setting), ``nearest`` or
            ``bicubic``; the masks are upsampled to the input size (the official
            ``scale_factor=4`` is 32 px / 8 px for a stage-3 CIFAR map).
        lam_concat: append ``lam_i`` as a constant channel to each image's features
            (default False, the published CIFAR setting; True in the ImageNet/ViT configs).

    Weights: normal(0, 0.01), zero biases (the official initialisation).
    """

    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        use_scale: bool = True,
        upsampling: str = "bilinear",
        lam_concat: bool = False,
    ):
        super().__init__(in_channels, reduction, use_scale, upsampling, lam_concat)
        c = self.feature_channels
        self.query = nn.Conv2d(c, self.inter_channels, 1)
        self.key = nn.Conv2d(c, self.inter_channels, 1)
        self.value = nn.Conv2d(c, 1, 1)
        self.init_weights_small_normal()

    def forward(self, feat: Tensor, indices: Sequence[Tensor], lams: Sequence[float], size: tuple) -> Tensor:
        """The (B, N, *size) masks of the images ``x[indices[i]]``, ``i = 0..N-1``."""
        n = len(indices)
        if n < 2 or len(lams) != n:
            raise ValueError(
                f"AdaptiveMaskBlock needs N >= 2 index tensors and N lambdas, got {n} and {len(lams)}"
            )
        self.check_feature_map(feat)
        b, _, h, w = feat.shape
        f = feat[torch.stack(list(indices))]  # (N, B, C, h, w)
        if self.lam_concat:
            lam = torch.as_tensor(list(lams), dtype=f.dtype, device=f.device)
            f = torch.cat([f, lam.view(n, 1, 1, 1, 1).expand(n, b, 1, h, w)], 2)
        f = f.flatten(0, 1)  # (N*B, C', h, w)
        q = F.relu(self.query(f)).view(n, b, self.inter_channels, h * w).float()
        k = F.relu(self.key(f)).view(n, b, self.inter_channels, h * w).float()
        v = self.value(f).view(n, b, h * w, 1).float()
        others = k.sum(0, keepdim=True) - k  # sum_{j != i} k_j
        logits = self.scale(q.transpose(-1, -2) @ others)  # (N, B, hw, hw)
        s = (logits.softmax(-1) @ v).view(n, b, h, w).transpose(0, 1)  # (B, N, h, w)
        return F.interpolate(s, size=size, mode=self.upsampling).softmax(1)


def mix_images(x: Tensor, indices: Sequence[Tensor], masks: Tensor) -> Tensor:
    """``sum_i masks[:, i] * x[indices[i]]`` in ``x``'s dtype (masks (B or 1, N, H, W))."""
    m = masks.to(device=x.device, dtype=x.dtype)
    out = sum(m[:, i : i + 1] * x.index_select(0, idx) for i, idx in enumerate(indices))
    return match_format(out, x)


@MODELS.register_module()
class AdAutoMixClassifier(MixBlockClassifier):
    """AdAutoMix: a classifier trained on mixed samples of ``N = mix_num`` images whose masks
    a generator (:class:`AdaptiveMaskBlock`) makes hard for it.

    A training step (one optimizer step, as the official code; the engine backpropagates
    the stages of :meth:`loss_stages` one by one, same gradients)::

        w ~ Beta(alpha, alpha)^N / sum  (N > 2, shared by both samples; N = 2: two draws
                                         lam_mb, lam_bb, w = (lam, 1 - lam) each)
        index_mb, index_bb: N index tensors each, the first the identity, the others random
                            permutations (sample b mixes x[b] with x[perm_i[b]])
        f = encoder_k(x) up to `mask_stage`                         (EMA encoder, no grad)
        M_mb = G(f, index_mb)  (with gradient)     M_bb = G(f, index_bb)  (no grad)
        M_bb = w_bb everywhere if min(w_bb) <= lam_margin                   (plain mixup)
        x_mb = sum_i M_mb,i * x[index_mb,i]; x_bb likewise; y_mix = sum_i w_i y[index_i]
        classifier:  loss_mix       = CE(head(encoder(x_bb)), y_mix_bb)
                     loss_one       = (1 - r) * CE(head_one(encoder(x)), y)     (r = 0 if N = 2)
                     loss_plain_mix = r * CE(head(encoder(sum_i w_i x[index_bb,i])), y_mix_bb)
        generator:   CE_k = CE(head_k(encoder_k(x_mb)), y_mix_mb)   (EMA encoder and head:
                            the gradient reaches M_mb through x_mb only)
                     cos  = mean_b sum_i w_i cos(head_k(encoder_k(x_mb)), head_k(encoder_k(x[index_mb,i])))
                     loss_mix_block = mix_block_weight * (-beta * CE_k + (1 - beta) * cos)
                                                                on adversarial steps
                                    = mix_block_weight * CE_k   on the others

    "Adversarial" within one optimizer step: the classifier and the generator touch disjoint
    parameters (the generator's gradient only comes from ``loss_mix_block``, the classifier's
    only from the other three terms), so summing the terms and stepping once is the
    alternating min-max of the paper: the classifier descends its mixed loss while, on every
    ``adv_interval``-th step (steps ``0, adv_interval, ...``; default 2, i.e. every other
    step, the official ``iter % 2``), the generator descends ``-beta * CE_k``, i.e. *ascends*
    the (EMA) classifier's mixed loss, regularised by the lambda-weighted cosine similarity
    between the EMA classifier's logits of the mixed sample and of its source images. On the
    other steps it is trained cooperatively as AutoMix's Mix Block (``+CE_k``). The signs are
    the official code's, where the generator's term ``-beta * CE_k + (1 - beta) * cos`` is
    added to the minimised loss (``mix_block_weight`` is the official ``head_mix_k``
    weight). The step is a function of the iteration alone: :meth:`schedules` declares
    ``self.step = iteration`` before each iteration (outside a runner ``loss()`` counts its
    own calls), so a resumed run continues exactly.

    The EMA encoder, neck and heads (``backbone_k``, ``neck_k``, ``head_k``) follow
    ``k = m k + (1 - m) q`` after each step (cosine 0.999 -> 0.999999 as AutoMix; the
    schedules of :class:`~mixbench.models.classifiers.automix.MixBlockClassifier`).
    Prediction is AutoMix's: the run's top-1 from ``encoder_q`` and ``head``, and the other
    three heads (EMA encoder, one-hot heads) recorded beside it. AdAutoMix has no mask
    loss (the masks sum to one by construction): there is no ``mask_loss`` option.

    Published CIFAR-100 ResNet-18 setting (configs/methods/adautomix.yaml, from OpenMixup's
    ``configs/classification/cifar100/adautomix/basic/r18_adautomix_bilinear.py``): alpha 1,
    3 images, lambda margin 0.03, beta 0.3, mixup ratio 0.5, generator on stage-3 features
    (256 channels), reduction 2, scaled attention, no lambda concatenation, bilinear
    upsampling (x4), momentum 0.999 -> 0.999999, all head weights 1.

    Differences from the official code, on purpose: the first of the ``N`` images is the
    sample itself (the official code draws ``N`` random permutations when ``N > 2``; the
    distribution of partners is the same, and the mix keeps the MixOutput contract
    ``mask[:, :1]`` = weight of ``x``); the lambda margin looks at the smallest weight,
    ``min(w) <= lam_margin`` (the official two-image rule; its three-image rule only looks at
    ``w_1``, and OpenMixup's copy of it compares ``lam_margin < 1 - w_1``, which is almost
    always true, so its classifier sees plain mixup nearly always); the clean logits for the
    cosine term come from one no-grad EMA pass over the batch, indexed per image (the
    official code runs the EMA encoder once per image on the permuted batch: the same
    train-mode batch statistics, so the same values); no ``switch_off``,
    ``head_ensemble`` or plots.

    Args:
        backbone, head, neck, loss, data_preprocessor, init_cfg, momentum, end_momentum,
            momentum_start, mask_stage, mix_block_weight, mix_block_lr, mix_block_min_lr:
            as :class:`~mixbench.models.classifiers.automix.MixBlockClassifier`.
        mix_block: generator config (default ``AdaptiveMaskBlock``; ``in_channels`` defaults
            to the channels of ``mask_stage``).
        alpha: Beta(alpha, alpha) of the lambdas (default 1.0; must be > 0).
        mix_num: number of images per mixed sample, ``N >= 2`` (default 3).
        random_num: draw ``N`` uniformly from ``2..mix_num`` at each step (the official
            ``is_random``; default False).
        lam_margin: if the smallest weight of the classifier's sample is at most this, its
            mask is the constant ``w`` (plain mixup) (default 0.03).
        beta: weight of the adversarial CE against the cosine term (default 0.3, the
            official ``beta_radio``).
        mixup_ratio: ``r``, the share of the plain N-image mixup in the classifier's
            clean-sample term when ``N > 2`` (default 0.5, the official ``mixup_radio``).
        adv_interval: the generator is adversarial on steps divisible by it (default 2).
        one_hot_weight: weight of ``loss_one + loss_plain_mix`` (default 1; 0 drops
            ``head_one`` and both passes).
        correct_lam: label each image by the mean area of its mask in the sample,
            ``w_i = mean(M_i)`` per sample, instead of the drawn ``w`` (default False: the
            official labels use the drawn ``w``, which with ``lam_concat=False`` the
            generator does not see, so the mask areas need not match them).
    """

    mix_block_type = "AdaptiveMaskBlock"
    absent_options = {
        "mask_loss": "AdAutoMix's masks sum to one at every pixel by construction, "
        "so it has no mask loss (AutoMix's and SAMix's option); remove it",
        "mix_block_loss": "the generator's loss is the classifier's own loss, "
        "adversarial on every adv_interval-th step; remove it",
    }

    def __init__(
        self,
        backbone: dict,
        head: dict,
        alpha: float = 1.0,
        mix_num: int = 3,
        random_num: bool = False,
        lam_margin: float = 0.03,
        beta: float = 0.3,
        mixup_ratio: float = 0.5,
        adv_interval: int = 2,
        correct_lam: bool = False,
        **kwargs,
    ):
        super().__init__(backbone=backbone, head=head, alpha=alpha, lam_margin=lam_margin, **kwargs)
        if not self.alpha > 0:
            raise ValueError("AdAutoMixClassifier.alpha must be > 0 (the generator always mixes), got 0")
        if not isinstance(mix_num, int) or isinstance(mix_num, bool) or mix_num < 2:
            raise ValueError(
                f"AdAutoMixClassifier.mix_num is the number of images per mixed sample, "
                f"an integer >= 2 (3 published), got {mix_num!r}"
            )
        for name, value in (("beta", beta), ("mixup_ratio", mixup_ratio)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"AdAutoMixClassifier.{name} is a weight in [0, 1], got {value!r}")
        if not isinstance(adv_interval, int) or adv_interval < 1:
            raise ValueError(
                f"AdAutoMixClassifier.adv_interval must be an integer >= 1 (1: adversarial "
                f"at every step, 2: every other step as published), got {adv_interval!r}"
            )
        self.mix_num, self.random_num = mix_num, bool(random_num)
        self.beta, self.mixup_ratio = float(beta), float(mixup_ratio)
        self.adv_interval, self.correct_lam = adv_interval, bool(correct_lam)
        self.step = 0

    def draw_weights(self, n: int) -> tuple:
        """``(w_mb, w_bb)``: the label weights of the generator's and the classifier's samples,
        ``n`` floats each, summing to 1 (see the class docstring)."""
        if n == 2:
            lam_mb, lam_bb = (float(v) for v in beta_sample(self.alpha, self.alpha, 2))
            return [lam_mb, 1.0 - lam_mb], [lam_bb, 1.0 - lam_bb]
        draws = beta_sample(self.alpha, self.alpha, n)
        w = (draws / draws.sum()).tolist()
        return w, w

    @staticmethod
    def draw_indices(n: int, batch: int, device) -> list:
        """The identity and ``n - 1`` random permutations of the batch."""
        return [torch.arange(batch, device=device)] + [torch.randperm(batch).to(device) for _ in range(n - 1)]

    def label_weights(self, weights: list, mask: Tensor) -> Tensor:
        """(B, N) label weight of each image in each mixed sample: the drawn ``weights``, or
        the masks' mean areas with ``correct_lam`` (detached: a label, not a prediction)."""
        if self.correct_lam:
            return mask.detach().float().mean((2, 3))
        w = torch.tensor(weights, dtype=torch.float32, device=mask.device)
        return w.expand(mask.shape[0], -1)

    def mix_output(self, x: Tensor, labels: Tensor, indices: list, weights: list, mask: Tensor) -> MixOutput:
        """The mixed sample's MixOutput: label weights ``w`` (or the masks' areas with
        ``correct_lam``), as ``lam``/``y_b`` for two images and as ``soft_targets`` for more."""
        lam = self.label_weights(weights, mask)
        soft = None
        if len(indices) > 2:
            soft = sum(
                lam[:, i : i + 1] * F.one_hot(labels.index_select(0, idx), self.num_classes)
                for i, idx in enumerate(indices)
            )
        return MixOutput(
            inputs=x,
            y_a=labels,
            y_b=labels.index_select(0, indices[1]),
            lam=lam[:, 0].contiguous(),
            index=indices[1],
            mask=mask[:, :1],
            soft_targets=soft,
        )

    def generate_masks(self, inputs: Tensor, adversarial: bool) -> dict:
        """Draw ``N``, the weights and indices; return the masks and mixed images of the
        generator's sample (``mb``, mask with gradient) and the classifier's (``bb``, no
        gradient), with the EMA logits of the clean batch when ``adversarial``."""
        b, size = inputs.shape[0], inputs.shape[-2:]
        n = int(torch.randint(2, self.mix_num + 1, (1,))) if self.random_num else self.mix_num
        w_mb, w_bb = self.draw_weights(n)
        index_mb = self.draw_indices(n, b, inputs.device)
        index_bb = self.draw_indices(n, b, inputs.device)
        with torch.no_grad():
            feat, clean_logits = (
                self.ema_features(inputs, logits=True) if adversarial else (self.ema_features(inputs), None)
            )
            if min(w_bb) <= self.lam_margin:
                mask_bb = torch.tensor(w_bb, device=inputs.device).view(1, n, 1, 1).expand(b, n, *size)
            else:
                mask_bb = self.mix_block(feat, index_bb, w_bb, size)
        mask_mb = self.mix_block(feat, index_mb, w_mb, size)
        return {
            "n": n,
            "w_mb": w_mb,
            "w_bb": w_bb,
            "index_mb": index_mb,
            "index_bb": index_bb,
            "mask_mb": mask_mb,
            "mask_bb": mask_bb,
            "clean_logits_k": clean_logits,
            "x_mb": mix_images(inputs, index_mb, mask_mb),
            "x_bb": mix_images(inputs, index_bb, mask_bb),
        }

    def loss_stages(self, inputs: Tensor, labels: Tensor):
        """The step's losses in groups, built lazily one group per ``next()``, in the
        official order of the forward passes: ``loss_mix_block`` (generator, EMA encoder),
        ``loss_one``, ``loss_plain_mix``, ``loss_mix`` (classifier). Only the generator's
        mask is shared between groups, and only the first group uses it, so a training step
        backpropagates each group and frees its graph before building the next (peak
        memory of one encoder graph instead of four, :mod:`mixbench.models.stages`); the
        values are the same as with one combined graph."""
        self.check_batch(inputs)
        adversarial = self.step % self.adv_interval == 0
        self.step += 1
        g = self.generate_masks(inputs, adversarial)
        logits_mb = self.ema_logits(g["x_mb"])
        ce_k = self.loss_module(
            logits_mb, self.mix_output(g["x_mb"], labels, g["index_mb"], g["w_mb"], g["mask_mb"])
        )
        if adversarial:
            lam = self.label_weights(g["w_mb"], g["mask_mb"])
            clean = g["clean_logits_k"].float()
            cos = sum(
                lam[:, i] * F.cosine_similarity(logits_mb.float(), clean.index_select(0, idx), dim=-1)
                for i, idx in enumerate(g["index_mb"])
            ).mean()
            yield {"loss_mix_block": self.mix_block_weight * (-self.beta * ce_k + (1 - self.beta) * cos)}
        else:
            yield {"loss_mix_block": self.mix_block_weight * ce_k}
        del logits_mb, ce_k, g["mask_mb"], g["x_mb"]
        out_bb = self.mix_output(g["x_bb"], labels, g["index_bb"], g["w_bb"], g["mask_bb"])
        if self.head_one is not None:
            plain = self.mixup_ratio if g["n"] > 2 else 0.0
            yield {
                "loss_one": self.one_hot_weight
                * (1 - plain)
                * self.loss_module(
                    self.head_one(self.neck(self.backbone(inputs))), MixOutput.unmixed(inputs, labels)
                )
            }
            if plain > 0:
                w = torch.tensor(g["w_bb"], device=inputs.device).view(1, -1, 1, 1)
                x_plain = mix_images(inputs, g["index_bb"], w)
                out_plain = self.mix_output(
                    x_plain, labels, g["index_bb"], g["w_bb"], w.expand(len(labels), -1, *inputs.shape[-2:])
                )
                yield {
                    "loss_plain_mix": self.one_hot_weight
                    * plain
                    * self.loss_module(self.logits(x_plain), out_plain)
                }
        yield {"loss_mix": self.loss_module(self.logits(g["x_bb"]), out_bb)}

    def set_step(self, step: int) -> None:
        self.step = step

    def schedules(self) -> list:
        """:class:`MixBlockClassifier`'s (EMA momentum, optional generator learning rate,
        EMA update), and ``self.step = iteration`` before each iteration, so that the
        adversarial/cooperative alternation is a function of the iteration alone."""
        return super().schedules() + [ValueSchedule("adversarial_step", lambda it, total: it, self.set_step)]
