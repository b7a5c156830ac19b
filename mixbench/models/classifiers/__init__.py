from .mixup_classifier import MixupClassifier

__all__ = ["MixupClassifier"]
