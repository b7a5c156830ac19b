"""AutoMix (Liu, Li, Wu, Liu, Wang, Li, "AutoMix: Unveiling the Power of Mixup for Stronger
Classifiers", ECCV 2022, arXiv:2103.13027): a Mix Block learns the mixing mask from the
features of a momentum (EMA) encoder, trained jointly with the classifier (bi-level).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_alpha, is_int_at_least
from mixbench.mixers.kernels import blend_pairs
from mixbench.mixers.sampling import beta_sample
from mixbench.registry import MODELS

from ..schedules import AfterIteration, LearningRateSchedule, ScheduledParts, ValueSchedule
from ..stages import StagedLosses
from .mixup_classifier import MixupClassifier, build_module

UPSAMPLING = ("nearest", "bilinear", "bicubic")
MASK_LOSS_MODES = ("L1", "L1+Variance")


def rescale_lambda(lam: float, k: float) -> float:
    """SAMix's lambda encoding curve (OpenMixup's ``lam_mul_k``)::

        lam' = (4/3 lam^3 - 2 lam^2 + (k + 1) lam) / (k + 1/3)

    It fixes 0, 1/2 and 1 and has slope ``(k + 1) / (k + 1/3)`` at the ends and
    ``k / (k + 1/3)`` at 1/2: small ``k`` pulls lambdas away from 0 and 1 towards 1/2."""
    if k < 0:
        raise ValueError(f"rescale_lambda needs k >= 0, got {k}")
    return (4 / 3 * lam**3 - 2 * lam**2 + (k + 1) * lam) / (k + 1 / 3)


def init_small_normal(module: nn.Module) -> None:
    """Every conv of ``module``: weights ~ N(0, 0.01), zero biases (the official Mix Block
    and AdaptiveMask initialisation)."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


class FeatureMaskBlock(nn.Module):
    """What the mask generators on a backbone's feature map share (:class:`PixelMixBlock`,
    AdAutoMix's ``AdaptiveMaskBlock``): their options and checks, the width of the
    query/key embedding, the attention's scale and the official initialisation.

    Args:
        in_channels: channels of the feature map.
        reduction: the query/key embedding has ``max(in_channels // reduction, 1)`` channels.
        use_scale: divide the attention logits by the square root of that width.
        upsampling: ``nearest``, ``bilinear`` or ``bicubic`` (mask to the input size).
        lam_concat: a constant lambda channel is appended to the features (so the convs
            read ``in_channels + 1`` channels, :attr:`feature_channels`).

    A subclass builds its convs after ``super().__init__`` and then calls
    :meth:`init_weights_small_normal`.
    """

    def __init__(self, in_channels: int, reduction: int, use_scale: bool, upsampling: str, lam_concat: bool):
        super().__init__()
        name = type(self).__name__
        if upsampling not in UPSAMPLING:
            raise ValueError(f"{name}.upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
        if int(in_channels) < 1 or int(reduction) < 1:
            raise ValueError(
                f"{name} needs in_channels >= 1 and reduction >= 1, got {in_channels} and {reduction}"
            )
        self.in_channels, self.lam_concat = int(in_channels), bool(lam_concat)
        self.inter_channels = max(self.in_channels // int(reduction), 1)
        self.use_scale, self.upsampling = bool(use_scale), upsampling

    @property
    def feature_channels(self) -> int:
        """Channels the convs read: the feature map's, plus the lambda channel."""
        return self.in_channels + int(self.lam_concat)

    def init_weights_small_normal(self) -> None:
        """The official initialisation (:func:`init_small_normal`)."""
        init_small_normal(self)

    def check_feature_map(self, feat: Tensor) -> None:
        """A clear error unless ``feat`` is a (B, in_channels, h, w) map (a ViT stage gives
        tokens)."""
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} needs a (B, {self.in_channels}, h, w) feature map "
                f"from the backbone's mask stage, got shape {tuple(feat.shape)}; a "
                "backbone whose stages give tokens must reshape them to a map at its "
                "stage hook"
            )

    def scale(self, logits: Tensor) -> Tensor:
        """The attention logits divided by ``sqrt(inter_channels)`` with ``use_scale``."""
        return logits / math.sqrt(self.inter_channels) if self.use_scale else logits


@MODELS.register_module()
class PixelMixBlock(FeatureMaskBlock):
    """AutoMix's Mix Block (and SAMix's Mixer): a cross-attention between the feature maps
    of the two images that gives, per pixel, how much of the second image to use.

    With features ``f_a`` (first images) and ``f_b = f_a[index]`` (B, C, h, w),
    ``q = W_q f_a``, ``k = W_q f_b`` (shared 1x1 conv to ``C / reduction`` channels),
    ``v = W_v f_b`` (1x1 conv to one channel)::

        P = softmax(q^T k / sqrt(C / reduction))          # (B, hw, hw)
        m_b = sigmoid(upsample(P v))                       # (B, 1, H, W): weight of x[index]
        mask = 1 - m_b                                     # weight of the first image

    Options (all off by default, i.e. AutoMix's CIFAR block):

    * ``lam_concat`` (AutoMix on ImageNet): append a constant channel ``lam`` to the first
      image's features and ``1 - lam`` to the second's before the embeddings.
    * ``lam_mul`` (SAMix): scale the features by lambda before everything else,
      ``f_a <- f_a (1 + lam_mul lam')``, ``f_b <- f_b (1 + lam_mul (1 - lam'))`` with
      ``lam_residual``, else ``f_a <- lam' f_a``, ``f_b <- (1 - lam') f_b``; ``lam'`` is
      :func:`rescale_lambda` ``(lam, lam_mul_k)`` when ``lam_mul_k >= 0``, else ``lam``.
    * ``x_qk_concat`` (SAMix): query and key both from the concatenated pair,
      ``q = W_q [f_a; f_b]``, ``k = W_k [f_a; f_b]`` (two 1x1 convs from 2C channels).
    * ``value_hidden`` (SAMix): the value is a small network instead of one conv,
      ``v = W_2 ELU(BN(W_1 f_b))`` with ``W_1`` a 1x1 conv to ``value_hidden`` channels
      (OpenMixup's two-layer ``ConvNeck`` without biases).
    * ``mask_loss_mode``: ``L1`` (AutoMix) or ``L1+Variance`` (SAMix), see :meth:`mask_loss`.

    Args:
        in_channels: channels of the feature map (256: stage 3 of a ResNet-18).
        reduction: channel reduction of the query/key embedding (default 2).
        use_scale: divide the similarities by ``sqrt(C / reduction)`` (default True).
        upsampling: ``nearest`` (default, AutoMix CIFAR), ``bilinear`` (SAMix) or ``bicubic``.
        lam_concat: see above (default False).
        mask_loss_margin: margin of the L1 mask loss (default 0.1).
        lam_mul: weight of the lambda scaling, 0 = off (default 0; SAMix 1).
        lam_residual: residual form of the lambda scaling (default False; SAMix True).
        lam_mul_k: ``k`` of :func:`rescale_lambda`, negative = no rescaling (default -1;
            SAMix CIFAR 0.25).
        x_qk_concat: see above (default False; SAMix True).
        value_hidden: hidden channels of the value network, None = one 1x1 conv (default;
            SAMix CIFAR ResNet-18: 128).
        mask_loss_mode: ``L1`` (default) or ``L1+Variance`` (SAMix).

    Weights: normal(0, 0.01), zero biases (the official initialisation).
    """

    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        use_scale: bool = True,
        upsampling: str = "nearest",
        lam_concat: bool = False,
        mask_loss_margin: float = 0.1,
        lam_mul: float = 0.0,
        lam_residual: bool = False,
        lam_mul_k: float = -1.0,
        x_qk_concat: bool = False,
        value_hidden: int | None = None,
        mask_loss_mode: str = "L1",
    ):
        super().__init__(in_channels, reduction, use_scale, upsampling, lam_concat)
        if mask_loss_mode not in MASK_LOSS_MODES:
            raise ValueError(
                f"PixelMixBlock.mask_loss_mode must be one of {MASK_LOSS_MODES}, got {mask_loss_mode!r}"
            )
        if not 0.0 <= float(lam_mul) <= 1.0:
            raise ValueError(f"PixelMixBlock.lam_mul is a weight in [0, 1] (0: off), got {lam_mul!r}")
        if lam_concat and (lam_mul or x_qk_concat):
            raise ValueError(
                "PixelMixBlock.lam_concat cannot be combined with lam_mul or x_qk_concat "
                "(both already encode lambda / the pair in the query and key); pick one"
            )
        if value_hidden is not None and int(value_hidden) < 1:
            raise ValueError(f"PixelMixBlock.value_hidden must be >= 1 or None, got {value_hidden!r}")
        self.mask_loss_margin, self.mask_loss_mode = float(mask_loss_margin), mask_loss_mode
        self.lam_mul, self.lam_residual = float(lam_mul), bool(lam_residual)
        self.lam_mul_k, self.x_qk_concat = float(lam_mul_k), bool(x_qk_concat)
        c = self.feature_channels
        qk = 2 * c if self.x_qk_concat else c
        self.query = nn.Conv2d(qk, self.inter_channels, 1)
        self.key = nn.Conv2d(qk, self.inter_channels, 1) if self.x_qk_concat else None
        if value_hidden is None:
            self.value = nn.Conv2d(c, 1, 1)
        else:
            self.value = nn.Sequential(
                nn.Conv2d(c, int(value_hidden), 1, bias=False),
                nn.BatchNorm2d(int(value_hidden)),
                nn.ELU(),
                nn.Conv2d(int(value_hidden), 1, 1, bias=False),
            )
        self.init_weights_small_normal()

    def encode_lambda(self, f_a: Tensor, f_b: Tensor, lam: float) -> tuple:
        """The pair's features with lambda encoded (``lam_mul`` / ``lam_concat``)."""
        if self.lam_mul:
            s = rescale_lambda(lam, self.lam_mul_k) if self.lam_mul_k >= 0 else lam
            if self.lam_residual:
                f_a, f_b = f_a * (1 + self.lam_mul * s), f_b * (1 + self.lam_mul * (1 - s))
            else:
                f_a, f_b = f_a * s, f_b * (1 - s)
        if self.lam_concat:
            n, _, h, w = f_a.shape
            f_a = torch.cat([f_a, f_a.new_full((n, 1, h, w), lam)], 1)
            f_b = torch.cat([f_b, f_b.new_full((n, 1, h, w), 1 - lam)], 1)
        return f_a, f_b

    def forward(self, feat: Tensor, index: Tensor, lam: float, size: tuple) -> Tensor:
        """The (B, 1, *size) mask of the first image for pairs ``(i, index[i])``."""
        self.check_feature_map(feat)
        f_a, f_b = self.encode_lambda(feat, feat.index_select(0, index), lam)
        n, _, h, w = f_a.shape
        if self.x_qk_concat:
            pair = torch.cat([f_a, f_b], 1)
            q, k = self.query(pair), self.key(pair)
        else:
            q, k = self.query(f_a), self.query(f_b)
        q = q.flatten(2).transpose(1, 2).float()  # (B, hw, c)
        k = k.flatten(2).float()  # (B, c, hw)
        v = self.value(f_b).flatten(2).transpose(1, 2).float()  # (B, hw, 1)
        m_b = (self.scale(q @ k).softmax(-1) @ v).view(n, 1, h, w)
        m_b = torch.sigmoid(F.interpolate(m_b, size=size, mode=self.upsampling))
        return 1 - m_b

    def mask_loss(self, mask: Tensor, lam: float) -> Tensor:
        """Mask loss on the batch's masks ``M`` (weights of the first image), means over the
        whole batch:

        * ``L1`` (AutoMix): ``max(|mean(M) - lam| - margin, 0)``;
        * ``L1+Variance`` (SAMix): ``max(|mean(M) - lam| - margin, 0) - 2 Var(M)`` with
          ``Var(M) = mean((M - mean(M))^2)``: the mask keeps its area near lambda and is
          pushed away from a flat ``lam`` everywhere (the variance weight 2 is the official
          code's, OpenMixup's ``mask_loss_mode="L1+Variance"``)."""
        mean = mask.mean()
        loss = (mean - lam).abs().sub(self.mask_loss_margin).clamp_min(0)
        if self.mask_loss_mode == "L1+Variance":
            loss = loss - 2 * (mask - mean).pow(2).mean()
        return loss


class _StopForward(Exception):
    def __init__(self, feat: Tensor):
        self.feat = feat


def stage_features(
    backbone: nn.Module, x: Tensor, stage: int, finish: Callable[[Tensor], Tensor] | None = None
):
    """The output of stage ``stage`` of a backbone following the stage-hook contract.

    Without ``finish`` the stages after ``stage`` are not run. With ``finish`` the whole
    backbone runs and ``(stage output, finish(backbone output))`` comes back from that one
    pass (AdAutoMix: the EMA features and the EMA classifier's logits)."""
    kept = {}

    def hook(k: int, feat: Tensor) -> Tensor:
        if k == stage:
            if finish is None:
                raise _StopForward(feat)
            kept["feat"] = feat
        return feat

    try:
        out = backbone(x, stage_hook=hook)
    except _StopForward as done:
        return done.feat
    if "feat" not in kept:
        raise ValueError(
            f"backbone {type(backbone).__name__} never called its stage hook with "
            f"stage {stage} (it has {getattr(backbone, 'num_stages', '?')} stages)"
        )
    return kept["feat"], finish(out)


def cosine_momentum(base: float, end: float, it: int, max_iters: int, start: float = 0.1) -> float:
    """AutoMix's EMA momentum at iteration ``it``: ``base`` before ``start * max_iters``,
    then ``end - (end - base) * (cos(pi * it / max_iters) + 1) / 2`` (OpenMixup's
    CosineScheduleHook with ``adjust_scope=[start, 1]``, ``warming_up='constant'``)."""
    if it < int(max_iters * start):
        return base
    return end - (end - base) * (math.cos(math.pi * it / max_iters) + 1) / 2


def cosine_lr(base: float, end: float, it: int, max_iters: int) -> float:
    """Cosine annealing from ``base`` at iteration 0 to ``end`` at ``max_iters``."""
    return end + (base - end) * (1 + math.cos(math.pi * it / max_iters)) / 2


MIX_BLOCK_GROUPS = (
    "give the Mix Block optimizer groups of its own: optim_wrapper.paramwise_cfg: "
    "{custom_keys: {mix_block: {lr_mult: 1.0}}}"
)


class MixBlockClassifier(StagedLosses, ScheduledParts, MixupClassifier):
    """What AutoMix, SAMix and AdAutoMix share: a mask generator (``mix_block``) reading
    stage ``mask_stage`` of an EMA copy of the classifier, the EMA classifier itself
    (``backbone_k``, ``neck_k``, ``head_k``: ``k = m k + (1 - m) q`` after each
    iteration), a clean-sample head ``head_one``, and the schedules of its parts.

    A subclass implements :meth:`loss_stages` (the engine backpropagates the stages one by
    one, :mod:`mixbench.models.stages`) and sets :attr:`mix_block_type`.

    Prediction: the run's top-1 is ``encoder_q`` with ``head``; :meth:`predict` also
    evaluates the three other heads OpenMixup evaluates (EMA encoder, one-hot heads) and
    result.json records OpenMixup's best-of-four-heads reading beside our one-head number
    (``top1_best_head_median_last_n``), never in its place.

    Schedules (:meth:`schedules`, applied by the engine's ``MethodScheduleHook``; each a
    function of the iteration alone, so a resumed run continues exactly):

    * before each iteration, the EMA momentum ``self.momentum`` =
      :func:`cosine_momentum` ``(momentum, end_momentum, iteration, max_iters,
      momentum_start)``; with ``mix_block_lr``, the learning rate of the Mix Block's
      optimizer groups = :func:`cosine_lr` ``(mix_block_lr, mix_block_min_lr, iteration,
      max_iters)`` (the Mix Block then needs groups of its own:
      ``paramwise_cfg: {custom_keys: {mix_block: {lr_mult: 1.0}}}``);
    * after each iteration (after the optimizer step), :meth:`momentum_update`.

    Args:
        backbone, head, neck, loss, data_preprocessor, init_cfg: as :class:`MixupClassifier`
            (no ``mixer``: the Mix Block is the mixer).
        mix_block: the generator's config (default type :attr:`mix_block_type`;
            ``in_channels`` defaults to the channels of ``mask_stage``).
        alpha: Beta(alpha, alpha) of the mixing weights.
        momentum: base EMA momentum (default 0.999).
        end_momentum: final EMA momentum (default 0.999999).
        momentum_start: fraction of training before which the momentum stays at
            ``momentum`` (default 0.1).
        mask_stage: backbone stage (1-based) whose EMA features feed the Mix Block.
        lam_margin: the classifier's sample is a plain mixup when its smallest weight is
            at most this.
        one_hot_weight: weight of the clean-sample loss (0 drops ``head_one`` and its pass).
        mix_block_weight: weight of the Mix Block's loss (default 1; OpenMixup's
            ``head_weights.head_mix_k``).
        mix_block_lr: the Mix Block's initial learning rate, or None to let it follow the
            main schedule (default None).
        mix_block_min_lr: its final learning rate (default 0).
    """

    mix_block_type = ""

    def __init__(
        self,
        backbone: dict,
        head: dict,
        neck: dict | None = None,
        loss: dict | None = None,
        mix_block: dict | None = None,
        alpha: float = 2.0,
        momentum: float = 0.999,
        end_momentum: float = 0.999999,
        momentum_start: float = 0.1,
        mask_stage: int = 3,
        lam_margin: float = 0.08,
        one_hot_weight: float = 1.0,
        mix_block_weight: float = 1.0,
        mix_block_lr: float | None = None,
        mix_block_min_lr: float = 0.0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
        **unknown,
    ):
        self.refuse_unknown_options(unknown)
        super().__init__(
            backbone=backbone,
            head=head,
            neck=neck,
            loss=loss,
            mixer=None,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        name = type(self).__name__
        self.alpha = check_alpha(alpha)
        for key, value in (
            ("momentum", momentum),
            ("end_momentum", end_momentum),
            ("momentum_start", momentum_start),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}.{key} must lie in [0, 1], got {value!r}")
        if not is_int_at_least(mask_stage, 1):
            raise ValueError(
                f"{name}.mask_stage must be a stage of the backbone (an integer >= 1), got {mask_stage!r}"
            )
        self.check_backbone(
            f"{name.removesuffix('Classifier')} (mask_stage {mask_stage})", f"feature_map:{mask_stage}"
        )
        if not 0.0 <= float(lam_margin) < 0.5:
            raise ValueError(f"{name}.lam_margin must lie in [0, 0.5), got {lam_margin!r}")
        for key, value in (("mix_block_lr", mix_block_lr), ("mix_block_min_lr", mix_block_min_lr)):
            if value is not None and not float(value) >= 0.0:
                raise ValueError(f"{name}.{key} must be >= 0, got {value!r}")
        self.base_momentum = self.momentum = float(momentum)
        self.end_momentum, self.momentum_start = float(end_momentum), float(momentum_start)
        self.mask_stage, self.lam_margin = mask_stage, float(lam_margin)
        self.one_hot_weight, self.mix_block_weight = float(one_hot_weight), float(mix_block_weight)
        self.mix_block_lr = None if mix_block_lr is None else float(mix_block_lr)
        self.mix_block_min_lr = float(mix_block_min_lr)
        # no head for the clean-sample CE when it is switched off (DDP needs every trainable
        # parameter to receive a gradient)
        self.head_one = (
            build_module(head, "model.head", in_channels=self.backbone.out_channels[-1])
            if self.one_hot_weight > 0
            else None
        )
        self.backbone_k = copy.deepcopy(self.backbone).requires_grad_(False)
        self.neck_k = copy.deepcopy(self.neck).requires_grad_(False)
        self.head_k = copy.deepcopy(self.head).requires_grad_(False)
        # the EMA one-hot head: evaluated only (predict), as OpenMixup's head_one_k
        self.head_one_k = (
            copy.deepcopy(self.head_one).requires_grad_(False) if self.head_one is not None else None
        )
        mix_block = dict(mix_block or {})
        mix_block.setdefault("type", self.mix_block_type)
        in_channels = self.backbone.out_channels[mask_stage - 1]
        if mix_block["type"] == self.mix_block_type:
            mix_block = {**self.mix_block_defaults(in_channels), **mix_block}
        self.mix_block = build_module(mix_block, "model.mix_block", in_channels=in_channels)

    #: options this method does not have, with why (said when a config gives one)
    absent_options: dict = {}

    def refuse_unknown_options(self, unknown: dict) -> None:
        """A clear error for options the class does not take: why, if it says
        (:attr:`absent_options`), else the closest options it has."""
        if not unknown:
            return
        name = type(self).__name__
        key = sorted(unknown)[0]
        if key in self.absent_options:
            raise ValueError(f"{name} has no option {key!r}: {self.absent_options[key]}")
        options = sorted(
            {
                p
                for cls in type(self).__mro__
                if issubclass(cls, MixBlockClassifier)
                for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "unknown", "kwargs")
            }
        )
        close = difflib.get_close_matches(key, options, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"{name} has no option {key!r}; {hint}Its options: {', '.join(options)}")

    def mix_block_defaults(self, in_channels: int) -> dict:
        """Default settings of a :attr:`mix_block_type` block on ``in_channels`` feature
        channels, under the config's ``mix_block`` entries: none (the block's own)."""
        return {}

    def ema_modules(self) -> tuple:
        """(EMA module, online module) pairs: the encoder, the neck, the head and, with a
        one-hot head, its EMA copy (which only :meth:`predict` uses)."""
        pairs = ((self.backbone_k, self.backbone), (self.neck_k, self.neck), (self.head_k, self.head))
        if self.head_one_k is not None:
            pairs += ((self.head_one_k, self.head_one),)
        return pairs

    def init_weights(self) -> None:
        """mmengine's initialisation (``init_cfg``, pretrained weights), then the EMA encoder,
        neck and head set equal to the online ones: copied in ``__init__``, they would
        otherwise be initialised apart from them (OpenMixup copies them in its init_weights
        too)."""
        super().init_weights()
        with torch.no_grad():
            for ema, online in self.ema_modules():
                ema.load_state_dict(online.state_dict())

    def ema_pairs(self) -> tuple:
        """(EMA parameters, online parameters) in matching order."""
        pairs = self.ema_modules()
        return (
            [p for ema, _ in pairs for p in ema.parameters()],
            [p for _, online in pairs for p in online.parameters()],
        )

    def ema_head(self, feats: Tensor) -> Tensor:
        """The EMA neck and head on the EMA backbone's output."""
        return self.head_k(self.neck_k(feats))

    def ema_logits(self, inputs: Tensor) -> Tensor:
        """Logits of the EMA classifier (encoder, neck and head; no parameter of it has a
        gradient, but the graph reaches ``inputs``: the Mix Block learns through it)."""
        return self.ema_head(self.backbone_k(inputs))

    def ema_features(self, inputs: Tensor, logits: bool = False):
        """The EMA encoder's features at ``mask_stage`` (the stages after it are not run);
        with ``logits``, ``(features, EMA logits)`` from the same pass."""
        return stage_features(
            self.backbone_k, inputs, self.mask_stage, finish=self.ema_head if logits else None
        )

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``k = m * k + (1 - m) * q`` for the encoder, neck and head, ``m = self.momentum``."""
        k, q = self.ema_pairs()
        torch._foreach_mul_(k, self.momentum)
        torch._foreach_add_(k, q, alpha=1.0 - self.momentum)

    def set_momentum(self, momentum: float) -> None:
        self.momentum = momentum

    def schedules(self) -> list:
        """The EMA momentum, the optional Mix Block learning rate and the EMA update (see
        the class docstring)."""
        out = [
            ValueSchedule(
                "ema_momentum",
                lambda it, total: cosine_momentum(
                    self.base_momentum, self.end_momentum, it, total, self.momentum_start
                ),
                self.set_momentum,
            ),
            AfterIteration("ema_update", self.momentum_update),
        ]
        if self.mix_block_lr is not None:
            out.append(
                LearningRateSchedule(
                    "mix_block_lr",
                    self.mix_block.parameters,
                    lambda it, total: cosine_lr(self.mix_block_lr, self.mix_block_min_lr, it, total),
                    hint=f"With mix_block_lr set, {MIX_BLOCK_GROUPS}.",
                )
            )
        return out

    @torch.no_grad()
    def predict(self, inputs: Tensor, labels: Tensor | None = None) -> list:
        """The online encoder's mixed head (``logits``: the run's top-1), and every head
        OpenMixup evaluates (``heads``, their top-1 recorded beside it, see
        :class:`mixbench.engine.metrics.Accuracy`)::

            mix_q = head(neck(encoder_q(x)))      one_q = head_one(neck(encoder_q(x)))
            mix_k = head_k(neck_k(encoder_k(x)))  one_k = head_one_k(neck_k(encoder_k(x)))

        (``one_*`` only with a one-hot head, ``one_hot_weight > 0``.) OpenMixup's summary
        of these runs reports the best head (:func:`mixbench.results.best_head_median`)."""
        feat_q = self.neck(self.backbone(inputs))
        feat_k = self.neck_k(self.backbone_k(inputs))
        mix_q = self.head(feat_q)
        heads = {"mix_q": mix_q, "mix_k": self.head_k(feat_k)}
        if self.head_one is not None:
            heads.update(one_q=self.head_one(feat_q), one_k=self.head_one_k(feat_k))
        return [
            {"logits": mix_q.float(), "labels": labels, "heads": {k: v.float() for k, v in heads.items()}}
        ]

    def check_batch(self, inputs: Tensor) -> None:
        """A clear error for a batch too small to mix."""
        if inputs.shape[0] < 2:
            name = type(self).__name__.replace("Classifier", "")
            raise ValueError(
                f"{name} needs batches of at least 2 samples to mix; set drop_last or a larger batch size"
            )


@MODELS.register_module()
class AutoMixClassifier(MixBlockClassifier):
    """AutoMix: a classifier trained on mixed samples whose masks a Mix Block generates.

    A training step (one optimizer step, as the official code; the engine backpropagates
    the stages of :meth:`loss_stages` one by one to free each graph early, same gradients)::

        lam_mb, lam_bb ~ Beta(alpha, alpha);  index_mb, index_bb random permutations
        f = encoder_k(x) up to stage `mask_stage`                    (EMA encoder, no grad)
        M_mb = MixBlock(f, index_mb)            M_bb = MixBlock(f, index_bb), no grad
        M_bb = lam_bb everywhere if min(lam_bb, 1 - lam_bb) <= lam_margin      (plain Mixup)
        x_mb = M_mb x + (1 - M_mb) x[index_mb]; x_bb likewise with M_bb
        loss = CE_mix(head(encoder_q(x_bb)), lam_bb)                 # the classifier
             + one_hot_weight * CE(head_one(encoder_q(x)), y)       # clean samples
             + mix_block_weight * CE_mix(head_k(encoder_k(x_mb)), lam_mb)  # Mix Block only:
               the EMA encoder and head_k have no gradient; it reaches M_mb through x_mb
             + mask_loss * max(|mean(M_mb) - lam_mb| - margin, 0)

    The EMA encoder (``backbone_k``, ``neck_k``, ``head_k``) follows ``k = m k + (1 - m) q``
    after each step, with ``m`` on a cosine schedule 0.999 -> 0.999999; the Mix Block's
    learning rate can follow its own cosine schedule (``mix_block_lr``; both declared by
    :meth:`~MixBlockClassifier.schedules`).
    Prediction uses ``encoder_q`` and ``head``: one number per run (OpenMixup's summary picks
    the best of four heads; we do not).

    Published CIFAR-100 ResNet-18 setting (configs/methods/automix.yaml): alpha 2, mask from
    stage 3 (256 channels; OpenMixup's ``mask_layer=2`` counts from 0), mask loss 0.1 with
    margin 0.1, lambda margin 0.08, momentum 0.999 -> 0.999999 (cosine after the first 10%
    of iterations), Mix Block reduction 2, nearest upsampling, no lambda concatenation, the
    Mix Block's learning rate 0.1 -> 0.05 (cosine).

    Args:
        as :class:`MixBlockClassifier` (``mix_block`` default type ``PixelMixBlock``; alpha
        default 2.0, mask_stage 3, lam_margin 0.08), and:
        mask_loss: weight of the mask loss (default 0.1).
        mix_block_loss: loss config for the Mix Block's classification loss (default None:
            the classifier's ``loss``; SAMix: ``EtaBalancedMixupLoss``).
    """

    mix_block_type = "PixelMixBlock"

    def __init__(
        self, backbone: dict, head: dict, mask_loss: float = 0.1, mix_block_loss: dict | None = None, **kwargs
    ):
        super().__init__(backbone=backbone, head=head, **kwargs)
        self.mask_loss_weight = float(mask_loss)
        # the Mix Block's classification loss: the classifier's own unless given (SAMix)
        self.mix_block_loss = (
            build_module(mix_block_loss, "model.mix_block_loss") if mix_block_loss is not None else None
        )

    def generate_masks(self, inputs: Tensor) -> tuple:
        """Draw the two lambdas and pairings and return ``(mix_mb, mix_bb, mask_loss)``:
        the Mix Block's sample (mask with gradient), the classifier's (detached mask), and
        the weighted mask loss."""
        b, size = inputs.shape[0], inputs.shape[-2:]
        lam_mb, lam_bb = (float(v) for v in beta_sample(self.alpha, self.alpha, 2))
        index_mb, index_bb = (torch.randperm(b).to(inputs.device) for _ in range(2))
        with torch.no_grad():
            feat = self.ema_features(inputs)
            if min(lam_bb, 1 - lam_bb) <= self.lam_margin:
                mask_bb = inputs.new_full((b, 1, *size), lam_bb, dtype=torch.float32)
            else:
                mask_bb = self.mix_block(feat, index_bb, lam_bb, size)
        mask_mb = self.mix_block(feat, index_mb, lam_mb, size)
        mixes = []
        for mask, index, lam in ((mask_mb, index_mb, lam_mb), (mask_bb, index_bb, lam_bb)):
            mixed = blend_pairs(inputs, index, mask)
            mixes.append((mixed, mask, index, lam))
        mask_loss = self.mask_loss_weight * self.mix_block.mask_loss(mask_mb, lam_mb)
        return mixes[0], mixes[1], mask_loss

    def loss_stages(self, inputs: Tensor, labels: Tensor):
        """The step's losses in three stages: ``loss_mix`` (classifier on its mixed batch);
        then ``loss_mix_block`` and ``loss_mask`` (Mix Block only; they share the Mix
        Block's graph); then ``loss_one`` (classifier on the clean batch, when
        ``one_hot_weight > 0``). No stage's graph shares a node with a later stage's except
        the Mix Block's mask, which only the second stage uses."""
        self.check_batch(inputs)
        (x_mb, mask_mb, index_mb, lam_mb), (x_bb, mask_bb, index_bb, lam_bb), mask_loss = self.generate_masks(
            inputs
        )

        def mix_output(x, mask, index, lam):
            return MixOutput(
                inputs=x,
                y_a=labels,
                y_b=labels.index_select(0, index),
                lam=torch.full(labels.shape, lam, device=labels.device),
                index=index,
                mask=mask,
            )

        yield {"loss_mix": self.loss_module(self.logits(x_bb), mix_output(x_bb, mask_bb, index_bb, lam_bb))}
        criterion = self.mix_block_loss if self.mix_block_loss is not None else self.loss_module
        yield {
            "loss_mix_block": self.mix_block_weight
            * criterion(self.ema_logits(x_mb), mix_output(x_mb, mask_mb, index_mb, lam_mb)),
            "loss_mask": mask_loss,
        }
        if self.head_one is not None:
            yield {
                "loss_one": self.one_hot_weight
                * self.loss_module(
                    self.head_one(self.neck(self.backbone(inputs))), MixOutput.unmixed(inputs, labels)
                )
            }
