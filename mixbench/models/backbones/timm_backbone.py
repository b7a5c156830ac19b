"""Any timm model as a backbone (never downloads weights)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from mixbench.registry import MODELS

from .base import StageHook


@MODELS.register_module()
class TimmBackbone(nn.Module):
    """Wraps ``timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)``.

    Returns the model's final feature map (B, C, h, w) for CNNs (NHWC maps such as Swin's
    are permuted to NCHW), or its pooled pre-logits features (B, C) for models whose
    features are tokens (ViTs) and for models whose head normalises after pooling (timm's
    ``NormMlpClassifierHead``: ConvNeXt, MaxViT, ...), whose last LayerNorm would otherwise
    be lost. Either way the output equals what the timm model with ``num_classes=0``
    returns before pooling, or after its own pooling. It has a single stage: the stage hook
    sees the input (stage 0) and the last feature map (stage 1; for a ConvNeXt or MaxViT
    the map before the head's pooling, so that AutoMix and AlignMix get a map there too;
    for a ViT the pooled tokens).

    Args:
        model_name: any name from ``timm.list_models()``.
        pretrained: None, or the path of a local checkpoint (a state dict, or a dict with
            ``state_dict``/``model``) loaded non-strictly; classifier weights are dropped.
            Nothing is ever downloaded.
        **kwargs: passed to ``timm.create_model`` (``img_size``, ``in_chans``, ``drop_path_rate``...).
    """

    def __init__(self, model_name: str, pretrained: str | None = None, **kwargs):
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            close = timm.list_models(f"*{model_name.split('_')[0]}*")[:8]
            raise ValueError(f"timm has no model {model_name!r}; similar: {', '.join(close)}")
        if isinstance(pretrained, bool):
            raise ValueError(
                "TimmBackbone.pretrained takes a local checkpoint path, not a bool: "
                "mixbench never downloads weights"
            )
        self.model_name = model_name
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        self.out_channels = [self.model.num_features]
        self._head_pools = isinstance(getattr(self.model, "head", None), timm.layers.NormMlpClassifierHead)
        self._features_are_map: bool | None = None  # see capabilities
        if pretrained:
            self.load_local(pretrained)

    def load_local(self, path: str) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained checkpoint {path} not found (TimmBackbone only "
                "loads local files; download the weights yourself)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        own = self.model.state_dict()
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not state:
            raise ValueError(f"{path}: no tensor matches the parameters of {type(self.model).__name__}")
        self.model.load_state_dict(state, strict=False)

    @property
    def num_stages(self) -> int:
        return 1

    @property
    def capabilities(self) -> frozenset:
        """``feature_map:1`` (and ``output_map`` unless the head pools and normalises) when the
        timm model's features are a map (CNNs, Swin); nothing for token models (ViTs). Found
        once by a forward pass of one small image (:data:`CAPABILITY_HELP`)."""
        if self._features_are_map is None:
            self._features_are_map = self._probe_features_map()
        if not self._features_are_map:
            return frozenset()
        return frozenset({"feature_map:1"} | (set() if self._head_pools else {"output_map"}))

    @torch.no_grad()
    def _probe_features_map(self) -> bool:
        embed = getattr(self.model, "patch_embed", None)
        size = tuple(getattr(embed, "img_size", None) or (64, 64))
        conv = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        chans = conv.in_channels if conv is not None else 3
        param = next(self.model.parameters())
        was_training = self.model.training
        self.model.eval()
        try:
            feats = self.model.forward_features(
                torch.zeros(1, chans, *size, device=param.device, dtype=param.dtype)
            )
        finally:
            self.model.train(was_training)
        return feats.dim() == 4

    def forward(self, x: Tensor, stage_hook: StageHook = None) -> Tensor:
        if stage_hook is not None:
            x = stage_hook(0, x)
        feats = self.model.forward_features(x)
        if feats.dim() != 4:  # tokens: timm's own pooling
            feats = self.model.forward_head(feats, pre_logits=True)
        elif getattr(self.model, "output_fmt", "NCHW") == "NHWC":
            feats = feats.permute(0, 3, 1, 2)  # Swin & co. return channels-last maps
        if stage_hook is not None:
            feats = stage_hook(1, feats)
        if self._head_pools and feats.dim() == 4:  # pool + the head's LayerNorm
            feats = self.model.forward_head(feats, pre_logits=True)
        return feats
