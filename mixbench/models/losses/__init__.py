from .mixed_ce import MixedCrossEntropy, soft_cross_entropy

__all__ = ["MixedCrossEntropy", "soft_cross_entropy"]
