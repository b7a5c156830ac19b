"""Vision Transformer backbone that can return its class-token attention map."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from mixbench.registry import MODELS

from .base import StageHook
from .timm_backbone import TimmBackbone


@MODELS.register_module()
class ViTBackbone(TimmBackbone):
    """A timm ``VisionTransformer`` (ViT, DeiT; Dosovitskiy et al., ICLR 2021; Touvron et
    al., ICML 2021) that can also return the attention of its class token over the patch
    grid in the last block, computed in the same forward pass (TransMix, SMMix).

    ``forward(x, return_attn=True)`` returns ``(features, attn)``: ``features`` (B, C) are
    the pooled pre-logits features (the class token), ``attn`` (B, gh, gw) is the
    last block's attention from the class token to each patch, softmax over all tokens,
    averaged over heads and detached (TransMix's ``attn[:, :, 0, 1:].mean(1)``). The
    extra cost is one (B, heads, 1, N) product on the last block's queries and keys, read
    from its qkv projection by a forward hook; the block itself runs unchanged (fused
    attention included).

    Args:
        model_name: a timm ViT (default ``deit_small_patch16_224``: DeiT-S, 22M parameters).
        pretrained: optional local checkpoint (see :class:`TimmBackbone`).
        **kwargs: passed to ``timm.create_model``, e.g. for a tiny test model
            ``img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, in_chans=1``.
    """

    def __init__(self, model_name: str = "deit_small_patch16_224", pretrained: Optional[str] = None,
                 **kwargs):
        super().__init__(model_name, pretrained=pretrained, **kwargs)
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(self.model, VisionTransformer) or getattr(self.model, "cls_token", None) is None:
            raise ValueError(f"ViTBackbone needs a timm VisionTransformer with a class token; "
                             f"{model_name!r} builds {type(self.model).__name__}. Use TimmBackbone "
                             "for other timm models")
        self._qkv: Optional[Tensor] = None
        self._record = False
        self.model.blocks[-1].attn.qkv.register_forward_hook(self._keep_qkv)

    @property
    def grid_size(self) -> tuple:
        """(gh, gw): the patch grid."""
        return tuple(self.model.patch_embed.grid_size)

    def _keep_qkv(self, module, inputs, output) -> None:
        if self._record:
            self._qkv = output

    def cls_attention(self, qkv: Tensor) -> Tensor:
        """(B, gh, gw) head-averaged attention of the class token over the patches, from the
        last block's qkv projection output (B, N, 3 * heads * head_dim)."""
        attn_mod = self.model.blocks[-1].attn
        b, n, _ = qkv.shape
        qkv = qkv.detach().reshape(b, n, 3, attn_mod.num_heads, attn_mod.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn_mod.q_norm(qkv[0][:, :, :1]), attn_mod.k_norm(qkv[1])
        scores = (q.float() * attn_mod.scale) @ k.float().transpose(-2, -1)    # (B, heads, 1, N)
        attn = scores.softmax(-1).mean(1)[:, 0, self.model.num_prefix_tokens:]  # (B, patches)
        return attn.reshape(b, *self.grid_size)

    def forward(self, x: Tensor, stage_hook: StageHook = None, return_attn: bool = False):
        if not return_attn:
            return super().forward(x, stage_hook=stage_hook)
        self._record = True
        try:
            feats = super().forward(x, stage_hook=stage_hook)
            qkv, self._qkv = self._qkv, None
        finally:
            self._record = False
        with torch.no_grad():
            return feats, self.cls_attention(qkv)
