from .base import StagedBackbone
from .preact_resnet import PreActResNetCIFAR, WideResNet
from .resnet_cifar import ResNetCIFAR, ResNeXtCIFAR
from .timm_backbone import TimmBackbone
from .vit import ViTBackbone

__all__ = [
    "StagedBackbone",
    "ResNetCIFAR",
    "ResNeXtCIFAR",
    "PreActResNetCIFAR",
    "WideResNet",
    "TimmBackbone",
    "ViTBackbone",
]
