"""Learnable and label-mixing methods (issue 8): imported by ``mixbench.models`` so that
their classes are registered in MODELS/HOOKS next to the rest of the models."""
from .classifiers.adautomix import AdaptiveMaskBlock, AdAutoMixClassifier, AdAutoMixScheduleHook  # noqa: F401
from .classifiers.automix import AutoMixClassifier, AutoMixScheduleHook, PixelMixBlock
from .classifiers.samix import EtaBalancedMixupLoss, SAMixClassifier  # noqa: F401
from .classifiers.transmix import TransMixClassifier, transmix_lambda
from .classifiers.smmix import SMMixClassifier
from .losses.decoupled import DecoupledMixupLoss

__all__ = ["AutoMixClassifier", "AutoMixScheduleHook", "PixelMixBlock", "DecoupledMixupLoss",
           "TransMixClassifier", "transmix_lambda"]
