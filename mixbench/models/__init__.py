"""mixbench.models: classifiers, backbones, necks, heads, losses (all registered in MODELS)."""

from .backbones import PreActResNetCIFAR, ResNetCIFAR, ResNeXtCIFAR, StagedBackbone, TimmBackbone, WideResNet
from .classifiers import MixupClassifier
from .data_preprocessor import ClassifierDataPreprocessor
from .heads import GlobalAveragePool, LinearHead
from .learnable import *  # noqa: F401,F403  (issue 8: learnable and label-mixing methods)
from .losses import MixedCrossEntropy, soft_cross_entropy

__all__ = [
    "StagedBackbone",
    "ResNetCIFAR",
    "ResNeXtCIFAR",
    "PreActResNetCIFAR",
    "WideResNet",
    "TimmBackbone",
    "MixupClassifier",
    "ClassifierDataPreprocessor",
    "GlobalAveragePool",
    "LinearHead",
    "MixedCrossEntropy",
    "soft_cross_entropy",
]
