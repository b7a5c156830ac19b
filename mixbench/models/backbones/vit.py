"""Vision Transformer backbone: stages of blocks seen as patch-token maps, and the last
block's attention on request."""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.registry import MODELS

from .base import StagedBackbone, StageHook
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
    attention included). ``return_attn="patches"`` returns instead the attention each patch
    receives from all patches (SMMix's image attention score; a (B, heads, N, N) product),
    and ``return_tokens=True`` adds the final-normed patch tokens (B, gh * gw, C) (SMMix's
    fine-grained token labels).

    Stages (the stage-hook contract of :mod:`mixbench.models.backbones.base`): the blocks
    are split into ``num_stages`` consecutive groups of (nearly) equal size (DeiT-S with
    ``num_stages=4``: 4 stages of 3 blocks). The hook sees the input image at stage 0; after stage
    ``k < num_stages`` it sees the patch tokens of the group's output as a map
    (B, C, gh, gw) (token ``i`` at row ``i // gw``, column ``i % gw``), and what it returns
    replaces them; the class token is carried alongside unchanged (it reads the hooked
    patches in the next blocks). After the last stage it sees the final features (B, C)
    (final norm, class-token pooling), which the neck and head receive. So with
    ``num_stages=4`` AutoMix can take its mask features from stage 2 (block 6 of DeiT-S, as
    OpenMixup's DeiT configs) and ManifoldMix can mix the patch tokens of a hidden stage.
    ``out_channels`` is the embedding width for every stage. The default, one stage, is
    :class:`TimmBackbone`'s: the hook sees the input and the final features only.

    Args:
        model_name: a timm ViT (default ``deit_small_patch16_224``: DeiT-S, 22M parameters).
        pretrained: optional local checkpoint (see :class:`TimmBackbone`).
        num_stages: number of block groups, 1 to the depth (default 1: all blocks).
        **kwargs: passed to ``timm.create_model``, e.g. for a tiny test model
            ``img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, in_chans=1``.
    """

    def __init__(
        self,
        model_name: str = "deit_small_patch16_224",
        pretrained: str | None = None,
        num_stages: int | None = None,
        **kwargs,
    ):
        super().__init__(model_name, pretrained=pretrained, **kwargs)
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(self.model, VisionTransformer) or getattr(self.model, "cls_token", None) is None:
            raise ValueError(
                f"ViTBackbone needs a timm VisionTransformer with a class token; "
                f"{model_name!r} builds {type(self.model).__name__}. Use TimmBackbone "
                "for other timm models"
            )
        depth = len(self.model.blocks)
        num_stages = 1 if num_stages is None else num_stages
        if not isinstance(num_stages, int) or isinstance(num_stages, bool) or not 1 <= num_stages <= depth:
            raise ValueError(
                f"ViTBackbone.num_stages must be an integer from 1 to the depth "
                f"({depth} blocks), got {num_stages!r}"
            )
        self.stage_ends = [round(depth * k / num_stages) for k in range(1, num_stages + 1)]
        self.out_channels = [self.model.num_features] * num_stages
        self._qkv: Tensor | None = None
        self._record = False
        self.model.blocks[-1].attn.qkv.register_forward_hook(self._keep_qkv)

    @property
    def num_stages(self) -> int:
        return len(self.stage_ends)

    stage_outputs = StagedBackbone.stage_outputs

    @property
    def capabilities(self) -> frozenset:
        """Class-token and patch attention, the final patch tokens on the patch grid; a
        (B, C, gh, gw) patch map after every stage but the last (the last gives the pooled
        features)."""
        return frozenset(
            {
                "cls_attention",
                "patch_attention",
                "patch_tokens",
                *(f"feature_map:{k}" for k in range(1, self.num_stages)),
            }
        )

    @property
    def grid_size(self) -> tuple:
        """(gh, gw): the patch grid."""
        return tuple(self.model.patch_embed.grid_size)

    def _keep_qkv(self, module, inputs, output) -> None:
        if self._record:
            self._qkv = output

    def _last_block_attention(self, qkv: Tensor, queries: slice) -> Tensor:
        """Head-averaged softmax attention (B, Q, N) of the last block for the query tokens
        ``queries``, from its qkv projection output (B, N, 3 * heads * head_dim), in float32."""
        return self.block_attention(qkv, -1, queries)

    def block_attention(self, qkv: Tensor, block: int, queries: slice = slice(None)) -> Tensor:
        """Head-averaged softmax attention (B, Q, N) of block ``block`` for the query tokens
        ``queries``, from that block's qkv projection output (B, N, 3 * heads * head_dim), in
        float32 and detached (TL-Align reads every block's through a hook on its ``attn.qkv``)."""
        attn_mod = self.model.blocks[block].attn
        b, n, _ = qkv.shape
        qkv = qkv.detach().reshape(b, n, 3, attn_mod.num_heads, attn_mod.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn_mod.q_norm(qkv[0][:, :, queries]), attn_mod.k_norm(qkv[1])
        scores = (q.float() * attn_mod.scale) @ k.float().transpose(-2, -1)  # (B, heads, Q, N)
        return scores.softmax(-1).mean(1)

    def cls_attention(self, qkv: Tensor) -> Tensor:
        """(B, gh, gw) head-averaged attention of the class token over the patches, from the
        last block's qkv projection output (B, N, 3 * heads * head_dim)."""
        prefix = self.model.num_prefix_tokens
        attn = self._last_block_attention(qkv, slice(0, 1))[:, 0, prefix:]  # (B, patches)
        return attn.reshape(qkv.shape[0], *self.grid_size)

    def patch_attention(self, qkv: Tensor) -> Tensor:
        """(B, gh, gw) attention each patch receives from the patches in the last block:
        softmax over all tokens, averaged over heads and over the patch queries (SMMix's image
        attention score, the official code's ``attn[:, :, 1:, 1:].mean((1, 2))``)."""
        prefix = self.model.num_prefix_tokens
        attn = self._last_block_attention(qkv, slice(prefix, None))[:, :, prefix:].mean(1)
        return attn.reshape(qkv.shape[0], *self.grid_size)

    def forward(
        self, x: Tensor, stage_hook: StageHook = None, return_attn=False, return_tokens: bool = False
    ):
        """Pooled features (B, C); with ``return_attn`` (``True``/``"cls"``: the class
        token's row, :meth:`cls_attention`; ``"patches"``: :meth:`patch_attention`) and/or
        ``return_tokens`` (the final-normed patch tokens (B, gh * gw, C)) a tuple
        ``(features, [attn], [tokens])`` in that order."""
        attn_fn = self._attention_fn(return_attn)
        self._record = attn_fn is not None
        try:
            if stage_hook is None:
                tokens = self.model.forward_features(x)
            else:
                tokens = self._staged_features(x, stage_hook)
            qkv, self._qkv = self._qkv, None
        finally:
            self._record = False
        feats = self.model.forward_head(tokens, pre_logits=True)
        if stage_hook is not None:
            feats = stage_hook(self.num_stages, feats)
        out = [feats]
        if attn_fn is not None:
            with torch.no_grad():
                out.append(attn_fn(qkv))
        if return_tokens:
            out.append(tokens[:, self.model.num_prefix_tokens :])
        return out[0] if len(out) == 1 else tuple(out)

    def _staged_features(self, x: Tensor, stage_hook) -> Tensor:
        """timm's ``forward_features`` (patch embedding, position embedding, blocks, final
        norm) with the stage hook applied to the input and after every stage but the last."""
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(stage_hook(0, x)))))
        start = 0
        for k, end in enumerate(self.stage_ends, 1):
            x = m.blocks[start:end](x)
            start = end
            if k < self.num_stages:
                x = self._hook_patch_map(stage_hook, k, x)
        return m.norm(x)

    def _hook_patch_map(self, stage_hook, k: int, tokens: Tensor) -> Tensor:
        """Show the patch tokens (B, P + gh * gw, C) to the hook as a (B, C, gh, gw) map and
        put back what it returns, the P prefix (class) tokens unchanged."""
        prefix = self.model.num_prefix_tokens
        b, n, c = tokens.shape
        gh, gw = self.grid_size
        if n - prefix != gh * gw:
            raise ValueError(
                f"ViTBackbone: {n - prefix} patch tokens do not tile the {gh}x{gw} grid; "
                "stage hooks need the img_size the model was built for"
            )
        fmap = tokens[:, prefix:].transpose(1, 2).reshape(b, c, gh, gw)
        out = stage_hook(k, fmap)
        if out is fmap:
            return tokens
        if out.shape != fmap.shape:
            raise ValueError(
                f"a stage hook must return the patch map's shape {tuple(fmap.shape)} at "
                f"stage {k} of ViTBackbone, got {tuple(out.shape)}"
            )
        return torch.cat([tokens[:, :prefix], out.flatten(2).transpose(1, 2)], dim=1)

    def _attention_fn(self, return_attn):
        if return_attn is False or return_attn is None:
            return None
        if return_attn is True or return_attn == "cls":
            return self.cls_attention
        if return_attn == "patches":
            return self.patch_attention
        raise ValueError(
            f"ViTBackbone.forward: return_attn must be False, True/'cls' (the class "
            f"token's attention) or 'patches' (the patches' mean attention), got "
            f"{return_attn!r}"
        )
