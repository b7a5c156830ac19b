"""Vanilla: no mixing (the baseline every table compares against)."""

from torch import Tensor

from .base import BaseMixer, MixOutput


class Vanilla(BaseMixer):
    """Identity mixer: returns the batch unchanged with ``lam = 1``, ``y_b = y_a`` and the
    identity pairing; takes no hyperparameters."""

    def __init__(self):
        super().__init__(alpha=0.0)

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        return self.identity(x, y)
