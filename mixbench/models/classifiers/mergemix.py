"""MergeMix (Jin, Li, Jian, Yu, Wang, "MergeMix: A Unified Augmentation Paradigm for Visual
and Multi-Modal Understanding", arXiv:2510.23479; code github.com/JinXins/MergeMix and
OpenMixup's ``openmixup/models/classifiers/mergemix.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_alpha, check_flag, check_number
from mixbench.mixers.kernels import blend_pairs
from mixbench.mixers.sampling import beta_sample, pairing_index
from mixbench.registry import MODELS

from ..stages import StagedLosses
from .mixup_classifier import MixupClassifier


def merge_schedule(depth: int, total: int, inflect: float = -0.5) -> list:
    """Tokens merged after each of ``depth`` blocks, ``total`` in all: ToMe's decreasing
    schedule (Bolya et al., ICLR 2023, ``parse_r`` with inflection -0.5, as MergeMix).

    For a base ``r`` the list runs linearly from ``int(r * (1 - inflect))`` down to
    ``2 r - int(r * (1 - inflect))`` (each entry truncated); ``r`` is the first base whose
    sum is closest to ``total``, and the difference is added to the first block."""
    if total < 0 or depth < 1:
        raise ValueError(f"merge_schedule needs depth >= 1 and total >= 0, got {depth}, {total}")

    def linear(r: int) -> list:
        low = int(r * (1.0 - inflect))
        step = (2 * r - 2 * low) / max(depth - 1, 1)
        return [int(low + step * i) for i in range(depth)]

    best = min(range(max(total, 1)), key=lambda r: abs(sum(linear(r)) - total))
    rs = linear(best)
    rs[0] += total - sum(rs)
    return rs


def bipartite_merge_map(metric: Tensor, r: int) -> tuple:
    """ToMe's bipartite soft matching (Bolya et al., ICLR 2023) with the first (class)
    token protected: which merged token each token goes to.

    ``metric`` (B, N, d) are the tokens' keys averaged over heads. Tokens split into A (even
    positions) and B (odd); each A token's most cosine-similar B token is its match, and the
    ``r`` A tokens with the most similar matches (never the class token) merge into them.
    Returns ``(token_map, n_new)``: ``token_map`` (B, N) the new index of every token (the
    kept A tokens in their order first, then the B tokens), ``n_new = N - r``.
    """
    b, n, _ = metric.shape
    r = min(r, (n - 1) // 2)
    if r <= 0:
        return torch.arange(n, device=metric.device).expand(b, n), n
    unit = metric / metric.norm(dim=-1, keepdim=True)
    scores = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)  # (B, Na, Nb)
    scores[:, 0, :] = -torch.inf  # the class token stays
    best, match = scores.max(-1)
    order = best.argsort(dim=-1, descending=True, stable=True)  # most similar first
    merged, kept = order[:, :r], order[:, r:].sort(-1).values
    na, nb = scores.shape[1:]
    token_map = torch.empty(b, n, dtype=torch.long, device=metric.device)
    rows = torch.arange(b, device=metric.device)[:, None]
    n_kept = na - r
    token_map[rows, 2 * kept] = torch.arange(n_kept, device=metric.device).expand(b, n_kept)
    token_map[:, 1::2] = n_kept + torch.arange(nb, device=metric.device)
    token_map[rows, 2 * merged] = n_kept + match.gather(1, merged)
    return token_map, n - r


def merge_tokens(x: Tensor, size: Tensor, token_map: Tensor, n_new: int) -> tuple:
    """Size-weighted mean of the tokens ``x`` (B, N, C) that ``token_map`` sends to the
    same place (ToMe's ``merge_wavg``); returns the merged tokens and their sizes (B, n_new, 1)."""
    b, _, c = x.shape
    new_size = size.new_zeros(b, n_new, 1).scatter_add_(1, token_map[..., None], size)
    summed = x.new_zeros(b, n_new, c).scatter_add_(1, token_map[..., None].expand(-1, -1, c), x * size)
    return summed / new_size, new_size


@torch.no_grad()
def merged_cls_scores(vit, inputs: Tensor, schedule: list, block: int) -> Tensor:
    """MergeMix's recovered attention score of every patch (B, gh * gw).

    A forward of the timm ViT ``vit`` on ``inputs`` with ToMe: after the attention of block
    ``k`` the tokens are merged by :func:`bipartite_merge_map` on the keys (``schedule[k]``
    tokens, size-weighted means; plain attention, no proportional-attention bias), and a
    source map tracks which merged token every original token is in. At block ``block``
    the attention summed over heads, ``A`` (B, n, n), is read before that block merges, and
    every patch gets its merged token's attention to the class token: ``score_t = A[s(t), 0]``
    (the recovery ``R(A_K, S)``; merged patches share a score).
    """
    m = vit
    x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(inputs))))
    b, n, _ = x.shape
    size = x.new_ones(b, n, 1)
    source = torch.arange(n, device=x.device).expand(b, n)
    for k, blk in enumerate(m.blocks[: block + 1]):
        attn_mod = blk.attn
        h = blk.norm1(x)
        qkv = attn_mod.qkv(h).reshape(b, x.shape[1], 3, attn_mod.num_heads, attn_mod.head_dim)
        q, key, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, key = attn_mod.q_norm(q), attn_mod.k_norm(key)
        attn = ((q.float() * attn_mod.scale) @ key.float().transpose(-2, -1)).softmax(-1)
        if k == block:
            summed = attn.sum(1)  # (B, n, n)
            return summed[:, :, 0].gather(1, source[:, m.num_prefix_tokens :])
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, x.shape[1], -1)
        x = x + blk.drop_path1(blk.ls1(attn_mod.proj(attn_mod.norm(out))))
        token_map, n_new = bipartite_merge_map(key.mean(1), schedule[k])
        x, size = merge_tokens(x, size, token_map, n_new)
        source = token_map.gather(1, source)
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    raise ValueError(f"block {block} is past the ViT's {len(m.blocks)} blocks")


def top_token_mask(scores: Tensor, lam: float) -> Tensor:
    """1.0 on the ``int(lam * L)`` patches of highest score (ties: the first), else 0; (B, L)."""
    b, length = scores.shape
    p = int(lam * length)
    order = scores.argsort(dim=-1, descending=True, stable=True)
    mask = torch.zeros_like(scores, dtype=torch.float32)
    mask.scatter_(1, order[:, :p], 1.0)
    return mask


def rescaled_lambda(area: Tensor, mean: float, noise: Tensor, tau: float = 1e-5) -> Tensor:
    """MergeMix's re-scaled label weights: ``z = mean + area * noise`` (a draw of
    N(mean, area) per image, ``noise`` ~ N(0, 1)), normalised over the batch,
    ``(z - min z) / (max z - min z + tau)``, clipped to [0, 1]."""
    z = mean + area.double() * noise.double()
    return ((z - z.min()) / (z.max() - z.min() + tau)).clamp(0, 1).float()


@MODELS.register_module()
class MergeMixClassifier(StagedLosses, MixupClassifier):
    """MergeMix: images mixed on the most attended tokens of a token-merged ViT.

    Paper: Jin, Li, Jian, Yu, Wang, arXiv:2510.23479 (image classification part). A step
    on a batch ``x`` with labels ``y``::

        lam ~ Beta(alpha, alpha)
        s = merged_cls_scores(ViT, x)                # ToMe forward of the clean images, no
                                                     # gradient: K = L - merged tokens; block
                                                     # attn_block's attention recovered to the
                                                     # L patches (:func:`merged_cls_scores`)
        M = top int(lam * L) patches of s per image  # 1 keeps x_i, 0 shows x_j
        x~ = M * x_i + (1 - M) * x_j                 # j: a no-repeat random permutation
        lam~ = rescaled_lambda(mean(M), merged / L)  # lam_scale; else lam~ = mean(M)
        loss = CE(f(x~), lam~ y_i + (1 - lam~) y_j) + CE(f(mixer(x)), its label)

    The second term is the official "base" loss: the mixer's batch (Mixup alpha 0.8) in
    its own forward pass. Label weights ``lam~`` (with ``lam_scale``): a draw of
    N(K'/L, mean(M)) per image (K' the merged tokens), min-max normalised over the batch
    (the paper's re-scaling policy; official ``lambda_scale``).

    Published setting (OpenMixup's ``deit_s_mergemix_l9_a1_tm98_s_sz224_bs100_ep200``,
    CIFAR-100, DeiT-S): alpha 1.0, 98 of 196 tokens merged (``merge_ratio`` 0.5) on ToMe's
    decreasing schedule (:func:`merge_schedule`), attention of the ninth of 12 blocks
    (``attn_block`` -4), ``lam_scale`` on, base loss Mixup(0.8), label smoothing 0.1
    (configs/methods/mergemix.yaml).

    What the official code does differently: (1) with its ``tome_in_mix=False`` the
    training and test forwards of the classifier also merge tokens (the model is a ToMe
    ViT); here they run on all tokens, as its ``tome_in_mix=True``, and ToMe is only the
    mask policy; (2) it reads the recovered scores through the token map of the last
    block while the attention is the ninth's (indices of a different token set); here the
    map of the tokens the attention block sees; (3) its mask pass runs with gradient in
    training mode (drop path active); here without gradient, in the model's mode; (4) ties
    of merged tokens' scores go to the first patch here (``topk`` picks any).

    Cost per step: one forward without gradient up to ``attn_block`` (the mask) and two
    training forwards (MergeMix's batch and the mixer's). The two losses are two stages
    (:class:`~mixbench.models.stages.StagedLosses`): mixbench's runner backpropagates the
    MergeMix loss before the base forward, so one training graph is alive at a time (the
    same gradients as one backward of the sum; ``bench/learnable.py``: peak memory 1.88x
    Vanilla with both graphs).

    Args:
        backbone: a :class:`ViTBackbone` (one class token, no patch dropout).
        head, neck, loss, data_preprocessor: see :class:`MixupClassifier`.
        mixer: the base loss's mixer (default ``Mixup`` alpha 0.8).
        alpha: Beta(alpha, alpha) of lam (1.0).
        merge_ratio: share of the patch tokens merged over the whole depth (0.5).
        attn_block: the block whose attention makes the mask; negative counts from the
            end (-4: the ninth of twelve).
        lam_scale: re-scaled label weights (True) or the area of ``M`` (False).
        generator: optional CPU generator for MergeMix's draws (default: the global one).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        mixer: dict | None = None,
        alpha: float = 1.0,
        merge_ratio: float = 0.5,
        attn_block: int = -4,
        lam_scale: bool = True,
        generator: torch.Generator | None = None,
        **kwargs,
    ):
        super().__init__(
            backbone=backbone,
            head=head,
            mixer=mixer if mixer is not None else {"type": "Mixup", "alpha": 0.8},
            **kwargs,
        )
        self.check_backbone("MergeMix", "cls_attention")
        model = self.backbone.model
        if model.num_prefix_tokens != 1 or getattr(model.patch_drop, "prob", 0.0):
            raise ValueError(
                "MergeMixClassifier needs a ViT with one class token and no patch dropout "
                "(build it with patch_drop_rate=0 and no register tokens)"
            )
        if any(getattr(blk.attn, "gate", None) is not None for blk in model.blocks):
            raise ValueError(
                "MergeMixClassifier's token-merging pass knows timm's plain attention "
                "blocks; this ViT's attention has a gate"
            )
        self.alpha = check_alpha(alpha, "MergeMixClassifier.alpha")
        ratio = check_number(merge_ratio, "MergeMixClassifier.merge_ratio")
        if ratio >= 1:
            raise ValueError(
                f"MergeMixClassifier.merge_ratio is the share of patch tokens merged, "
                f"in [0, 1) (0.5: 98 of DeiT-S's 196), got {merge_ratio!r}"
            )
        depth = len(model.blocks)
        if (
            isinstance(attn_block, bool)
            or not isinstance(attn_block, int)
            or not -depth <= attn_block < depth
        ):
            raise ValueError(
                f"MergeMixClassifier.attn_block must be a block index of the ViT's "
                f"{depth} blocks (negative counts from the end), got {attn_block!r}"
            )
        self.attn_block = attn_block % depth
        self.num_patches = self.backbone.grid_size[0] * self.backbone.grid_size[1]
        self.merged = int(ratio * self.num_patches)
        self.schedule = merge_schedule(depth, self.merged)
        self.lam_scale = check_flag(lam_scale, "MergeMixClassifier.lam_scale")
        self.generator = generator

    def mergemix(self, inputs: Tensor, labels: Tensor) -> MixOutput:
        """Mix a batch by MergeMix (``MixOutput`` with the token mask and the label weights)."""
        b = inputs.shape[0]
        lam = float(beta_sample(self.alpha, self.alpha, 1, self.generator)[0]) if self.alpha > 0 else 1.0
        scores = merged_cls_scores(self.backbone.model, inputs, self.schedule, self.attn_block)
        tokens = top_token_mask(scores, lam).reshape(b, 1, *self.backbone.grid_size)
        index = pairing_index(b, "no_repeat", self.generator).to(inputs.device)
        h, w = inputs.shape[-2:]
        gh, gw = self.backbone.grid_size
        mask = tokens.repeat_interleave(h // gh, 2).repeat_interleave(w // gw, 3)
        area = tokens.mean((1, 2, 3))
        lam_mix = area
        if self.lam_scale:
            noise = torch.randn(b, generator=self.generator, dtype=torch.float64).to(inputs.device)
            lam_mix = rescaled_lambda(area, self.merged / self.num_patches, noise)
        return MixOutput(
            inputs=blend_pairs(inputs, index, mask, binary=True),
            y_a=labels,
            y_b=labels[index],
            lam=lam_mix,
            index=index,
            mask=mask,
        )

    def loss_stages(self, inputs: Tensor, labels: Tensor):
        """The MergeMix loss, then the base loss (independent graphs)."""
        h, w = inputs.shape[-2:]
        gh, gw = self.backbone.grid_size
        if h % gh or w % gw or (h // gh, w // gw) != tuple(self.backbone.model.patch_embed.patch_size):
            raise ValueError(
                f"MergeMix mixes whole patches: feed images of the ViT's img_size "
                f"({gh} x {gw} patches), got {h} x {w}"
            )
        out = self.mergemix(inputs, labels)
        yield {"loss": self.loss_module(self.logits(out.inputs), out)}
        base = self.mixer(inputs, labels, model=self)
        yield {"base_loss": self.loss_module(self.logits(base.inputs, base.stage_hook), base)}
