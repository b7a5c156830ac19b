"""Learnable and label-mixing methods (issue 8): imported by ``mixbench.models`` so that
their classes are registered in MODELS next to the rest of the models."""

from .classifiers.adautomix import AdaptiveMaskBlock, AdAutoMixClassifier
from .classifiers.augmix import AugMixClassifier
from .classifiers.automix import AutoMixClassifier, MixBlockClassifier, PixelMixBlock

# issue 18 (methods-c)
from .classifiers.rankmixup import RankMixupClassifier

# issue 18 (methods-a)
from .classifiers.regmixup import RegMixupClassifier
from .classifiers.samix import EtaBalancedMixupLoss, SAMixClassifier
from .classifiers.smmix import SMMixClassifier
from .classifiers.transmix import TransMixClassifier, transmix_lambda
from .losses.decoupled import DecoupledMixupLoss

__all__ = [
    "AdaptiveMaskBlock",
    "AdAutoMixClassifier",
    "AutoMixClassifier",
    "MixBlockClassifier",
    "PixelMixBlock",
    "DecoupledMixupLoss",
    "EtaBalancedMixupLoss",
    "SAMixClassifier",
    "SMMixClassifier",
    "TransMixClassifier",
    "transmix_lambda",
    # issue 18 (methods-a)
    "RegMixupClassifier",
    # issue 18 (methods-c)
    "RankMixupClassifier",
    "AugMixClassifier",
]
