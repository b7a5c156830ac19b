"""The backbone contract: a stem, a list of stages, and a stage hook.

Every mixbench backbone returns its final feature map (B, C, h, w) and, given
``stage_hook``, calls ``x = stage_hook(0, x)`` on its input and
``feat = stage_hook(k, feat)`` after stage ``k = 1..num_stages``, continuing with what the
hook returns. ManifoldMix and AlignMix mix hidden features this way; saliency methods read
stage outputs the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor, nn

from mixbench.config import ConfigError

StageHook = Callable[[int, Tensor], Tensor] | None

#: What a backbone can offer a method, and where to find it (for the error message):
#: ``feature_map:<k>`` the stage hook sees a (B, C, h, w) map after stage k; ``output_map`` the
#: backbone returns a (B, C, h, w) map; ``cls_attention`` / ``patch_attention`` the last
#: block's attention of the class token / of the patches (``backbone(x, return_attn=...)``);
#: ``patch_tokens`` the final patch tokens on the patch grid (``return_tokens=True``, ``grid_size``).
#: A method may ask for ``feature_map:last``, the map after the backbone's last stage.
CAPABILITY_HELP = {
    "feature_map": "a backbone whose stage {k} gives a (B, C, h, w) feature map: ResNetCIFAR, "
    "ResNeXtCIFAR, WideResNet, PreActResNetCIFAR (a map after each stage), "
    "TimmBackbone or ConvNeXtCIFAR on a CNN (stage 1), or ViTBackbone with "
    "num_stages > {k} (patch tokens as a map)",
    "output_map": "a backbone that returns a (B, C, h, w) feature map: ResNetCIFAR, ResNeXtCIFAR, "
    "WideResNet, PreActResNetCIFAR, TimmBackbone on a CNN without a norm head",
    "stage": "a backbone with at least {k} stages: ResNetCIFAR, ResNeXtCIFAR, WideResNet, "
    "PreActResNetCIFAR, or ViTBackbone with num_stages >= {k} (TimmBackbone has one)",
    "cls_attention": "ViTBackbone (a timm VisionTransformer with a class token, e.g. deit_small_patch16_224)",
    "patch_attention": "ViTBackbone (a timm VisionTransformer with a class token, e.g. "
    "deit_small_patch16_224)",
    "patch_tokens": "ViTBackbone (a timm VisionTransformer: the final patch tokens on its patch "
    "grid, backbone(x, return_tokens=True), and grid_size)",
}


class CapabilityError(ConfigError):
    """A method needs something from the backbone that it does not offer."""


def _describe_need(need: str) -> str:
    kind, _, k = need.partition(":")
    if kind == "feature_map":
        return f"a (B, C, h, w) feature map after stage {k} (stage hook)"
    if kind == "stage":
        return f"at least {k} hookable stages"
    return {
        "output_map": "a (B, C, h, w) feature map as the backbone's output",
        "cls_attention": "class-token attention",
        "patch_attention": "the patches' attention",
    }.get(kind, need)


def check_capabilities(who: str, needs: Iterable[str], backbone: nn.Module) -> None:
    """Raise :class:`CapabilityError` unless ``backbone.capabilities`` covers ``needs``,
    naming what is missing, what the backbone offers and the backbones that have it."""
    offered = set(getattr(backbone, "capabilities", ()))
    num_stages = getattr(backbone, "num_stages", None)
    for need in needs:
        kind, _, k = need.partition(":")
        if need == "feature_map:last":
            need, k = f"feature_map:{num_stages}", str(num_stages)
        if need in offered or (kind == "stage" and num_stages is not None and int(k) <= num_stages):
            continue
        name = type(backbone).__name__
        model_name = getattr(backbone, "model_name", None)
        label = f"{name} ({model_name})" if model_name else name
        has = ", ".join(sorted(offered)) or "nothing a method can ask for"
        raise CapabilityError(
            f"{who} needs {_describe_need(need)} ('{need}'); {label} offers {has}. Use "
            + CAPABILITY_HELP.get(kind, "another backbone").format(k=k)
        )


class StagedBackbone(nn.Module):
    """Base class: subclasses set ``self.stem``, ``self.stages`` (ModuleList),
    ``self.post`` (applied after the last stage, before its hook) and ``self.out_channels``
    (channels after each stage)."""

    stem: nn.Module
    stages: nn.ModuleList
    post: nn.Module
    out_channels: list

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def capabilities(self) -> frozenset:
        """A feature map after every stage, and as the output (see :data:`CAPABILITY_HELP`)."""
        return frozenset({"output_map", *(f"feature_map:{k}" for k in range(1, self.num_stages + 1))})

    def forward(self, x: Tensor, stage_hook: StageHook = None) -> Tensor:
        if stage_hook is not None:
            x = stage_hook(0, x)
        x = self.stem(x)
        last = len(self.stages)
        for k, stage in enumerate(self.stages, 1):
            x = stage(x)
            if k == last:
                x = self.post(x)
            if stage_hook is not None:
                x = stage_hook(k, x)
        return x

    def stage_outputs(self, x: Tensor) -> list:
        """Outputs of every stage (k = 1..num_stages), for analysis and saliency."""
        outs: list = []

        def record(k: int, feat: Tensor) -> Tensor:
            if k > 0:
                outs.append(feat)
            return feat

        self.forward(x, stage_hook=record)
        return outs


#: weight initialisations of mixbench's own backbones: ``kaiming`` (torchvision's ResNet
#: init: Kaiming-normal convolutions, fan_out, ReLU gain; unit BN, zero biases) or ``pytorch``
#: (every layer's own default: convolutions Kaiming-uniform with a = sqrt(5), i.e. uniform in
#: +-1/sqrt(fan_in)). OpenMixup's CIFAR mixup runs never call their init_weights, so they train
#: from PyTorch's defaults (docs/protocol.md); the reproduction sweeps set ``init: pytorch``.
INIT_SCHEMES = ("kaiming", "pytorch")


def init_weights(module: nn.Module, scheme: str = "kaiming") -> None:
    """Initialise ``module``'s weights by ``scheme`` (:data:`INIT_SCHEMES`)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    if scheme == "pytorch":
        return
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
