from .base import StagedBackbone
from .preact_resnet import PreActResNetCIFAR, WideResNet
from .resnet_cifar import ResNetCIFAR, ResNeXtCIFAR
from .timm_backbone import TimmBackbone

__all__ = ["StagedBackbone", "ResNetCIFAR", "ResNeXtCIFAR", "PreActResNetCIFAR", "WideResNet",
           "TimmBackbone"]
