"""TL-Align (Xiao, Zheng, Zhu, Zhou, Lu, "Token-Label Alignment for Vision Transformers",
ICCV 2023, arXiv:2210.06455; official code github.com/Euphoria16/TL-Align)."""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier


def initial_token_weights(mask: Tensor, lam: Tensor, grid: tuple, prefix: int) -> Tensor:
    """Weight of the first image in each token's label before the first block, (B, P + gh*gw).

    ``mask`` (B, 1, H, W) is the per-pixel weight of the first image, ``lam`` (B,) its area
    weight, ``grid`` the (gh, gw) patch grid tiling the image exactly, ``prefix`` the
    number of class/register tokens. A patch token's weight is the share of its pixels that
    come from the first image (1 or 0 for a box on patch borders, as the official token
    CutMix; a fraction for a patch the box cuts); the prefix tokens start with ``lam``,
    the mixed image's label (official: the class token starts with the mixup target).
    """
    b, _, h, w = mask.shape
    gh, gw = grid
    if h % gh or w % gw:
        raise ValueError(
            f"TL-Align needs the patch grid {gh}x{gw} to tile the {h}x{w} images "
            "exactly; use the img_size the ViT was built for"
        )
    patches = F.avg_pool2d(mask.float(), (h // gh, w // gw)).flatten(1)  # (B, gh*gw)
    return torch.cat([lam.float()[:, None].expand(b, prefix), patches], dim=1)


def align_step(attn: Tensor, weights: Tensor) -> Tensor:
    """One block of token-label alignment: ``(A w + w) / 2`` for the head-averaged attention
    ``attn`` (B, N, N) (rows sum to 1) and token weights ``weights`` (B, N): a token's label
    becomes the attention-weighted labels of the tokens it reads, averaged with its own (the
    residual connection). The MLP acts token by token and leaves labels unchanged."""
    return (torch.bmm(attn, weights[:, :, None])[:, :, 0] + weights) / 2


@MODELS.register_module()
class TLAlignClassifier(MixupClassifier):
    """TL-Align: the label of a token-mixed image is traced through the ViT's attention.

    Paper: Xiao, Zheng, Zhu, Zhou, Lu, "Token-Label Alignment for Vision Transformers", ICCV
    2023 (arXiv:2210.06455). After a token mix (CutMix) every token carries the label of
    the image it came from; each transformer block mixes tokens through attention, so the
    labels are mixed the same way::

        Y^0_t = w_t y_a + (1 - w_t) y_b      w_t: share of token t taken from x_a
                                             (class token: w = lam, the area weight)
        Y^{l+1} = (A^l Y^l + Y^l) / 2        A^l: block l's attention, mean over heads,
                                             detached; the residual halves it
        L = CE(head(cls^L), Y^L_cls)

    Every token label stays a two-way mix ``w y_a + (1 - w) y_b`` (attention rows sum to 1),
    so only the weight ``w`` (B, N) is propagated, not the (B, N, K) label vectors of the
    official code: the same values at 1/K of the memory. The final class-token weight is
    the label weight of ``y_a`` (``avg`` pooling ViTs: the mean of the patch tokens').
    Batches mixed without a mask (Mixup in a Mixup/CutMix switch) keep their lambda:
    there every token carries the same label, which alignment leaves unchanged.

    Published setting (official ``main_tla.py`` defaults, DeiT-S on ImageNet): token CutMix
    alpha 1.0 on every batch, no Mixup, partner ``x.flip(0)``, label smoothing 0.1
    (``configs/methods/tlalign.yaml``). What the official code does differently: its
    CutMix box lies on patch borders (a box on the token grid); mixbench's CutMix box is
    in pixels and a patch it cuts starts with its pixel share, the same thing for boxes on
    patch borders. The official mixer also has a Mixup branch that fails (``len(None)``)
    and is never used; batches from any mask mixer are aligned here.

    Cost: per block a (B, heads, N, N) attention product in float32 from the block's qkv
    (read by a forward hook; the blocks themselves run unchanged, fused attention
    included) and a (B, N, N) x (B, N) product; no extra forward.

    Args:
        backbone: a :class:`ViTBackbone` (class-token or ``avg`` pooling, no patch dropout).
        mixer: a mask mixer (default CutMix alpha 1.0, ``pairing: reverse`` as the official).
        head, neck, loss, data_preprocessor: see :class:`MixupClassifier`.
    """

    def __init__(self, backbone: dict, head: dict, mixer: dict | None = None, **kwargs):
        super().__init__(
            backbone=backbone,
            head=head,
            mixer=mixer if mixer is not None else {"type": "CutMix", "alpha": 1.0, "pairing": "reverse"},
            **kwargs,
        )
        self.check_backbone("TL-Align", "cls_attention")  # every block's attention of a ViT
        model = self.backbone.model
        if not isinstance(getattr(model, "patch_drop", nn.Identity()), nn.Identity):
            raise ValueError(
                "TLAlignClassifier traces each patch token's label; patch dropout removes "
                "tokens: build the ViT with patch_drop_rate=0"
            )
        if model.global_pool not in ("token", "avg"):
            raise ValueError(
                f"TLAlignClassifier knows the label of class-token ('token') and mean "
                f"('avg') pooling; the ViT pools with {model.global_pool!r}"
            )
        self._weights: Tensor | None = None
        for k, block in enumerate(model.blocks):
            block.attn.qkv.register_forward_hook(functools.partial(self._align_hook, k))

    def _align_hook(self, block: int, module, inputs, qkv: Tensor) -> None:
        if self._weights is None:
            return
        with torch.no_grad():
            attn = self.backbone.block_attention(qkv, block)
            if attn.shape[-1] != self._weights.shape[1]:
                raise ValueError(
                    f"TL-Align: block {block} sees {attn.shape[-1]} tokens, the labels "
                    f"{self._weights.shape[1]}: feed images of the ViT's img_size"
                )
            self._weights = align_step(attn, self._weights)

    def aligned_forward(self, inputs: Tensor, weights: Tensor) -> tuple:
        """Features of ``inputs`` and the label weights of ``y_a`` after alignment (B,)."""
        self._weights = weights.float()
        try:
            feats = self.backbone(inputs)
            aligned = self._weights
        finally:
            self._weights = None
        prefix = self.backbone.model.num_prefix_tokens
        lam = aligned[:, 0] if self.backbone.model.global_pool == "token" else aligned[:, prefix:].mean(1)
        return feats, lam

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        out = self.mixer(inputs, labels, model=self)
        if out.stage_hook is not None or out.soft_targets is not None:
            raise ValueError(
                f"TL-Align traces a two-image token mix of the input; the mixer "
                f"{type(self.mixer).__name__} mixes hidden features or returns soft targets"
            )
        if out.mask is None:
            return {"loss": self.loss_module(self.logits(out.inputs), out)}
        weights = initial_token_weights(
            out.mask, out.lam, self.backbone.grid_size, self.backbone.model.num_prefix_tokens
        )
        feats, lam = self.aligned_forward(out.inputs, weights)
        logits = self.head(self.neck(feats))
        return {"loss": self.loss_module(logits, dataclasses.replace(out, lam=lam))}
