"""The per-sample transform pipeline of image-file datasets: ``torchvision.transforms.v2``
classes, registered by name in ``TRANSFORMS`` so a dataset config lists them::

    pipeline:
      - {type: RandomResizedCrop, size: 224}
      - {type: RandomHorizontalFlip}

They act on uint8 (C, H, W) tensors in the loader and must end with a fixed size, so that
the default collate stacks a batch; conversion to float and normalisation happen on the
device in the model's data preprocessor, with the batch augments of
:mod:`mixbench.data.batch_augments`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torchvision.transforms import v2

from mixbench.registry import TRANSFORMS

# torchvision.transforms.v2 classes available by name in pipeline configs.
V2_TRANSFORMS = (
    "RandomResizedCrop",
    "Resize",
    "CenterCrop",
    "RandomCrop",
    "Pad",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "ColorJitter",
    "RandomGrayscale",
    "RandAugment",
    "TrivialAugmentWide",
    "AutoAugment",
    "AugMix",
    "RandomErasing",
    "RandomRotation",
    "RandomAffine",
    "GaussianBlur",
    "Grayscale",
)
for _name in V2_TRANSFORMS:
    if _name not in TRANSFORMS.module_dict:
        TRANSFORMS.register_module(name=_name, module=getattr(v2, _name))

_ENUM_ARGS = {"interpolation": v2.InterpolationMode, "policy": v2.AutoAugmentPolicy}


def build_transform(cfg: dict) -> Callable:
    """Build one transform from ``{type: Name, **kwargs}``. String values of
    ``interpolation`` ("bilinear", "bicubic", ...) and ``policy`` ("imagenet", ...) become
    torchvision's enums, so YAML can name them."""
    from mixbench.registry import check_type

    cfg = dict(cfg)
    name = cfg.pop("type", None)
    if name is None:
        raise ValueError(f"a pipeline step needs a 'type' key, e.g. {{type: Resize, size: 256}}; got {cfg}")
    check_type(TRANSFORMS, name, "dataset.pipeline")
    for key, enum in _ENUM_ARGS.items():
        if isinstance(cfg.get(key), str):
            cfg[key] = enum(cfg[key].lower())
    return TRANSFORMS.get(name)(**cfg)


def build_pipeline(steps: Sequence | None) -> Callable | None:
    """A ``v2.Compose`` of the configured steps (dicts or callables); None when empty."""
    if not steps:
        return None
    return v2.Compose([s if callable(s) else build_transform(s) for s in steps])
