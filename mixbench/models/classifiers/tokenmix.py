"""TokenMix (Liu, Liu, Zhou, Li, Liu, "TokenMix: Rethinking Image Mixing for Data
Augmentation in Vision Transformers", ECCV 2022, arXiv:2207.08409; official code
github.com/Sense-X/TokenMix)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixers._feature_mix import frozen_eval
from mixbench.mixers.attentivemix import _Features, load_pretrained, resize_map
from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_choice, check_flag, check_prob, is_int_at_least
from mixbench.mixers.kernels import blend_pairs
from mixbench.mixers.sampling import PAIRINGS, pairing_index
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier

MASK_TYPES = ("block", "random")
TEACHER_KEYS = ("library", "name", "checkpoint")


def masked_token_count(tokens: int, mask_ratio: float, min_tokens: int) -> int:
    """How many tokens TokenMix takes from the partner: ``min(N, int(ratio * N) + min_tokens)``
    (the official ``generate_mask``; 112 of DeiT's 196 tokens at ratio 0.5 and 14 extra)."""
    return min(tokens, int(mask_ratio * tokens) + min_tokens)


def block_token_mask(
    grid: tuple, count: int, min_aspect: float = 0.3, generator: torch.Generator | None = None
) -> Tensor:
    """BEiT's block-wise masking (Bao et al., ICLR 2022) as TokenMix uses it: a (gh, gw)
    float32 mask of 0/1 with (at most) ``count`` ones, built of rectangles.

    Until ``count`` tokens are masked, up to 10 attempts per rectangle: area ``s ~ U(1,
    count - masked)``, aspect ``r = exp(U(log a, -log a))`` (``a = min_aspect``, 0.3), sides
    ``h = round(sqrt(s r))``, ``w = round(sqrt(s / r))``; a rectangle narrower and lower than
    the grid (``h < gh``, ``w < gw``) at a uniform position is accepted if it masks between 1
    and ``count - masked`` new tokens. When 10 attempts in a row add nothing the mask stays
    short of ``count`` (as the official code). Draws come from ``generator`` (CPU)."""
    gh, gw = grid
    mask = torch.zeros(gh, gw)
    log_low, log_high = math.log(min_aspect), -math.log(min_aspect)
    masked = 0
    while masked < count:
        budget = count - masked
        added = 0
        for _ in range(10):
            u_area, u_aspect = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
            area = 1 + (budget - 1) * u_area
            aspect = math.exp(log_low + (log_high - log_low) * u_aspect)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < gw and h < gh:
                top = int(torch.randint(0, gh - h + 1, (), generator=generator))
                left = int(torch.randint(0, gw - w + 1, (), generator=generator))
                new = h * w - int(mask[top : top + h, left : left + w].sum())
                if 0 < new <= budget:
                    mask[top : top + h, left : left + w] = 1
                    added = new
                    break
        if added == 0:
            break
        masked += added
    return mask


def random_token_mask(grid: tuple, count: int, generator: torch.Generator | None = None) -> Tensor:
    """A (gh, gw) float32 mask with ``count`` ones at uniformly random tokens (the official
    ``mask_type='random'``)."""
    gh, gw = grid
    mask = torch.zeros(gh * gw)
    mask[torch.randperm(gh * gw, generator=generator)[:count]] = 1
    return mask.view(gh, gw)


def true_class_scores(dense: Tensor, labels: Tensor, top_k: int | None) -> Tensor:
    """(B, h, w) score of each image's own class from dense class scores ``dense`` (B, h, w,
    K): the score where the class is among the ``top_k`` best at that position, else 0 (the
    top-5 label maps of TokenLabeling that the official code reads; ``None`` or ``top_k >=
    K``: every position), clamped at 0."""
    b, h, w, k = dense.shape
    dense = dense.float()
    own = dense.gather(3, labels.view(b, 1, 1, 1).expand(b, h, w, 1))[..., 0]
    if top_k is not None and top_k < k:
        best = dense.topk(top_k, dim=3).indices
        own = torch.where((best == labels.view(b, 1, 1, 1)).any(3), own, torch.zeros_like(own))
    return own.clamp_min(0)


def normalized_maps(scores: Tensor) -> Tensor:
    """Each (h, w) map of ``scores`` (B, h, w), >= 0, divided by its sum; a map summing to
    zero becomes uniform (``1 / (h w)``: its label weight is then the token share)."""
    total = scores.sum((1, 2), keepdim=True)
    uniform = torch.full_like(scores, 1.0 / scores[0].numel())
    return torch.where(total > 0, scores / total.clamp_min(torch.finfo(scores.dtype).tiny), uniform)


def tokenmix_weights(maps: Tensor, token_mask: Tensor, index: Tensor) -> tuple:
    """``(w_a, w_b)`` (B,): the label weights of an image and of its partner ``index[i]``.

    ``maps`` (B, gh, gw) are the normalised score maps of the clean images for their own
    labels, ``token_mask`` (gh, gw) or (B, gh, gw) is 1 on the tokens taken from the
    partner::

        w_a = sum_t (1 - M_t) S_i(t)        the share of x_i's content still visible
        w_b = sum_t M_t S_j(t)              the share of x_j's content pasted in

    ``w_a + w_b`` need not be 1."""
    mask = token_mask.to(maps)
    w_a = (maps * (1 - mask)).sum((1, 2))
    w_b = (maps.index_select(0, index) * mask).sum((1, 2))
    return w_a, w_b


class TeacherScores(nn.Module):
    """Dense class scores (B, h, w, K) of a pretrained classifier: its final linear layer
    applied at every position of its final feature map (TokenLabeling's label-map head, from
    which the official TokenMix label maps come). A timm ViT's patch tokens count as the map
    (prefix tokens dropped, a square grid)."""

    def __init__(self, net: nn.Module, library: str):
        super().__init__()
        fc = net.get_classifier() if library == "timm" else getattr(net, "fc", None)
        if not isinstance(fc, nn.Linear):
            raise TypeError(
                f"TokenMix's teacher needs a final linear classifier to score every "
                f"position of its feature map; {type(net).__name__} has "
                f"{type(fc).__name__}. Use a ResNet-style model (timm or torchvision) "
                "or a timm model whose get_classifier() is an nn.Linear"
            )
        self.features = _Features(net, library)
        self.fc = fc
        self.prefix = int(getattr(net, "num_prefix_tokens", 0))

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def forward(self, x: Tensor) -> Tensor:
        feat = self.features(x)
        if feat.dim() == 3:  # ViT tokens (B, P + N, C)
            tokens = feat[:, self.prefix :]
            side = math.isqrt(tokens.shape[1])
            if side * side != tokens.shape[1]:
                raise ValueError(
                    f"TokenMix's teacher returned {tokens.shape[1]} patch tokens, not a square grid"
                )
            return self.fc(tokens.reshape(feat.shape[0], side, side, -1))
        if feat.dim() != 4:
            raise ValueError(
                f"TokenMix's teacher must give a (B, C, h, w) map or ViT tokens, got {tuple(feat.shape)}"
            )
        return self.fc(feat.permute(0, 2, 3, 1))


@MODELS.register_module()
class TokenMixClassifier(MixupClassifier):
    """TokenMix: image regions mixed at the token level, labels from a teacher's score maps.

    Paper: Liu, Liu, Zhou, Li, Liu, ECCV 2022 (arXiv:2207.08409). With probability ``prob``
    (0.5, the official ``switch_prob``) a batch is TokenMixed, otherwise mixed by ``mixer``
    (the official Mixup, alpha 0.8, partner ``x.flip(0)``). A TokenMix step, for the partner
    ``j = index[i]`` (``pairing: reverse`` = ``x.flip(0)``, as the official code)::

        n = min(N, int(mask_ratio * N) + min_tokens)     # 0.5 and 14: 112 of 196 tokens
        M: one (gh, gw) token mask per batch, n tokens of BEiT-style blocks
           (:func:`block_token_mask`; ``mask_type: random``: n random tokens), 1 = partner
        x~ = (1 - M) x_i + M x_j                          # whole patches, nearest upsampling
        S_i = normalised score map of the clean x_i for its own label y_i (:func:`true_class_scores`,
              resized to the token grid, divided by its sum)
        w_a = sum (1 - M) S_i,  w_b = sum M S_j            # :func:`tokenmix_weights`
        target = w_a e_{y_i} + w_b e_{y_j}                # / (w_a + w_b) with normalize_labels

    Score maps: with ``teacher`` a pretrained network (the paper: NFNet-F6 label maps, top-5
    classes per position), its classifier applied at every position of its final feature
    map; with ``teacher: null`` the model being trained scores its own final patch tokens
    with its head (a class activation map of the current weights, eval mode, no gradient:
    one extra forward of the clean batch).

    What differs from the official code (also in docs/learnable.md):

    * the official score maps are TokenLabeling's precomputed NFNet-F6 maps of the whole
      image, cut to each random crop by RoIAlign; here the teacher runs online on the
      augmented (cropped) batch, resized to ``teacher_input_size`` if given, and its map is
      brought to the token grid by average pooling (finer) or bilinear interpolation
      (coarser). Negative scores are clamped to 0 and a map summing to 0 is uniform (the
      official code divides by ``sum + 1e-8``, giving such an image weight 0);
    * the official loss is binary cross-entropy on ``w_a e_a + w_b e_b`` (label smoothing
      folded in), so the weights need not sum to 1. mixbench's cross-entropy wants a
      distribution: ``normalize_labels: true`` (default) divides by ``w_a + w_b`` (the same
      direction); ``false`` keeps the paper's weights (``w_a CE_a + w_b CE_b``);
    * ``teacher: null`` (the model's own maps) is mixbench's, for teacher-free runs and smoke
      tests; the paper always uses a pretrained teacher.

    Args:
        backbone: a :class:`ViTBackbone` (its patch grid and final patch tokens).
        head, neck, loss, data_preprocessor: see :class:`MixupClassifier`.
        mixer: the mixer of the other batches (default Mixup alpha 0.8, ``pairing: reverse``).
        teacher: None (default: the model being trained) or ``{library: timm | torchvision,
            name: <architecture>, checkpoint: <local path>}``: built without weights with
            the classifier's number of classes, loaded from the file (never downloaded);
            frozen, eval mode, float32.
        teacher_input_size: resize the batch to this square size (bilinear) for the teacher
            only (default None: as given).
        prob: probability of TokenMix per batch (default 0.5).
        mask_ratio: share of the tokens taken from the partner before ``min_tokens`` (0.5).
        min_tokens: extra tokens taken from the partner (default 14, for a 14 x 14 grid;
            about N / 14 keeps that share on a grid of N tokens).
        mask_type: ``block`` (default, BEiT blocks) or ``random`` tokens.
        top_k: keep a score only where the label is among the ``top_k`` best classes at that
            position (default 5, the official label maps; None: every score).
        normalize_labels: divide the target by ``w_a + w_b`` (default True; see above).
        pairing: partner of each image (default ``reverse``, the official ``x.flip(0)``).
        generator: optional CPU generator for TokenMix's own draws (default: the global one).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        mixer: dict | None = None,
        teacher: None | dict = None,
        teacher_input_size: int | None = None,
        prob: float = 0.5,
        mask_ratio: float = 0.5,
        min_tokens: int = 14,
        mask_type: str = "block",
        top_k: int | None = 5,
        normalize_labels: bool = True,
        pairing: str = "reverse",
        generator: torch.Generator | None = None,
        **kwargs,
    ):
        super().__init__(
            backbone=backbone,
            head=head,
            mixer=mixer if mixer is not None else {"type": "Mixup", "alpha": 0.8, "pairing": "reverse"},
            **kwargs,
        )
        self.check_backbone("TokenMix", "patch_tokens")
        self.prob = check_prob(prob, "TokenMixClassifier.prob")
        self.mask_ratio = check_prob(mask_ratio, "TokenMixClassifier.mask_ratio")
        for value, what, low in (
            (min_tokens, "min_tokens", 0),
            (top_k, "top_k", 1),
            (teacher_input_size, "teacher_input_size", 1),
        ):
            if value is not None and not is_int_at_least(value, low):
                raise ValueError(
                    f"TokenMixClassifier.{what} must be an integer >= {low}"
                    f"{'' if what == 'min_tokens' else ' or null'}, got {value!r}"
                )
        if min_tokens is None:
            raise ValueError("TokenMixClassifier.min_tokens must be an integer >= 0, got None")
        self.min_tokens, self.top_k, self.teacher_input_size = min_tokens, top_k, teacher_input_size
        self.mask_type = check_choice(mask_type, MASK_TYPES, "TokenMixClassifier.mask_type")
        self.normalize_labels = check_flag(normalize_labels, "TokenMixClassifier.normalize_labels")
        self.pairing = check_choice(pairing, PAIRINGS, "TokenMixClassifier.pairing")
        self.generator = generator
        gh, gw = self.backbone.grid_size
        self.count = masked_token_count(gh * gw, self.mask_ratio, min_tokens)
        if self.count >= gh * gw:
            raise ValueError(
                f"TokenMixClassifier: int({self.mask_ratio} * {gh * gw}) + min_tokens={min_tokens} "
                f"covers all {gh * gw} tokens of the {gh}x{gw} grid, so no image would stay; "
                f"lower min_tokens (14 is for a 14x14 grid, about {max(gh * gw // 14, 0)} here)"
            )
        if teacher is not None and (not isinstance(teacher, dict) or set(teacher) != set(TEACHER_KEYS)):
            raise ValueError(
                "TokenMixClassifier.teacher must be null (the model being trained) or a "
                f"dict with exactly the keys {', '.join(TEACHER_KEYS)}, got {teacher!r}"
            )
        self.teacher_net: TeacherScores | None = None
        if teacher is not None:
            net = load_pretrained(
                **teacher,
                who="TokenMix teacher",
                unset="set `teacher: null` to use the model being trained",
                num_classes=self.num_classes,
            )
            self.teacher_net = TeacherScores(net, teacher["library"]).requires_grad_(False).eval()

    def train(self, mode: bool = True):
        """Train/eval as asked; the teacher always stays in eval mode."""
        super().train(mode)
        if self.teacher_net is not None:
            self.teacher_net.eval()
        return self

    @torch.no_grad()
    def dense_scores(self, inputs: Tensor) -> Tensor:
        """(B, h, w, K) class scores of the clean batch: the teacher's, or the model's own
        head on its final patch tokens (eval mode)."""
        if self.teacher_net is not None:
            x = inputs.float()
            if self.teacher_input_size is not None:
                size = (self.teacher_input_size, self.teacher_input_size)
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            return self.teacher_net(x).float()
        with frozen_eval(self):
            _, tokens = self.backbone(inputs, return_tokens=True)
            b, n, c = tokens.shape
            tokens = self.backbone.model.fc_norm(tokens)  # the pooled features' norm, per token
            scores = self.head(self.neck(tokens.reshape(b * n, c)))
        return scores.float().view(b, *self.backbone.grid_size, -1)

    def score_maps(self, inputs: Tensor, labels: Tensor) -> Tensor:
        """(B, gh, gw) normalised score maps of the clean batch for its labels."""
        scores = true_class_scores(self.dense_scores(inputs), labels, self.top_k)
        return normalized_maps(resize_map(scores, self.backbone.grid_size))

    def token_mask(self) -> Tensor:
        """One (gh, gw) token mask for the batch, 1 on the partner's tokens."""
        grid = self.backbone.grid_size
        if self.mask_type == "block":
            return block_token_mask(grid, self.count, generator=self.generator)
        return random_token_mask(grid, self.count, generator=self.generator)

    def tokenmix(self, inputs: Tensor, labels: Tensor) -> MixOutput:
        """Mix a batch by TokenMix (``MixOutput`` with the soft target and the pixel mask of
        the first image)."""
        b, _, h, w = inputs.shape
        gh, gw = self.backbone.grid_size
        if h % gh or w % gw:
            raise ValueError(
                f"TokenMix mixes whole patches: the {gh}x{gw} patch grid must tile "
                f"the {h}x{w} images; feed the img_size the ViT was built for"
            )
        index = pairing_index(b, self.pairing, self.generator)
        token_mask = self.token_mask()
        maps = self.score_maps(inputs, labels)
        index = index.to(inputs.device)
        token_mask = token_mask.to(inputs.device)
        keep = (1 - token_mask).repeat_interleave(h // gh, 0).repeat_interleave(w // gw, 1)
        keep = keep.expand(b, 1, h, w).contiguous()
        mixed = blend_pairs(inputs, index, keep, binary=True)
        w_a, w_b = tokenmix_weights(maps, token_mask, index)
        total = w_a + w_b
        area = keep.mean((1, 2, 3))
        lam = torch.where(total > 0, w_a / total.clamp_min(1e-12), area)
        y_b = labels.index_select(0, index)
        if self.normalize_labels:
            w_a, w_b = lam, 1 - lam
        k = self.num_classes
        soft = w_a[:, None] * F.one_hot(labels, k).float() + w_b[:, None] * F.one_hot(y_b, k).float()
        return MixOutput(
            inputs=mixed, y_a=labels, y_b=y_b, lam=lam.float(), index=index, mask=keep, soft_targets=soft
        )

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        if inputs.shape[0] < 2 or not bool(torch.rand((), generator=self.generator) < self.prob):
            return super().loss(inputs, labels)
        out = self.tokenmix(inputs, labels)
        return {"loss": self.loss_module(self.logits(out.inputs), out)}
