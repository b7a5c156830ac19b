"""Vanilla: no mixing (the baseline every table compares against)."""
from torch import Tensor

from .base import BaseMixer, MixOutput


class Vanilla(BaseMixer):
    """Identity mixer: returns the batch unchanged with ``lam = 1`` and ``y_b = y_a``."""

    def __init__(self):
        super().__init__(alpha=0.0)

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        return self.identity(x, y)
