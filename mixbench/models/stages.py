"""What a multi-stage method declares about its training step; the engine runs the step.

A classifier whose training losses must be backpropagated in stages (AutoMix, SAMix,
AdAutoMix, MergeMix: each stage has its own encoder graph, and freeing it before the next one is
built keeps one encoder graph alive instead of two to four) subclasses
:class:`StagedLosses` and implements :meth:`StagedLosses.loss_stages`. That is the whole
declaration; the training step itself (one backward per stage under the optimizer
wrapper's autocast and loss scaling, gradient accumulation, clipping, the all-reduce of
the gradients under DDP, one optimizer step) belongs to the engine,
:func:`mixbench.engine.staged.train_step_in_stages`, which mixbench's runner uses for
every model that is a :class:`StagedLosses` (``mixbench/engine/staged.py``,
``mixbench/engine/ddp.py``). Models never step optimizers.

Outside mixbench's runner, ``model.train_step`` is mmengine's one-backward step of
:meth:`StagedLosses.loss` (all stages in one graph): the same gradients, more memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

from torch import Tensor


class StagedLosses(abc.ABC):
    """Mixin of a classifier whose training losses come in ordered stages.

    Contract of :meth:`loss_stages`: a generator that builds the step's losses one stage
    per ``next()``, each stage a dict of named loss tensors (every key containing
    ``loss``: mmengine sums those). A stage's graph may share no node with a later stage's
    graph that needs a gradient, so that the engine can backpropagate each stage and free
    its graph before the next is built; the sum of the stages' gradients is then what one
    backward of all the losses computes (up to the order of floating-point additions).
    The forward passes must run in the same order either way, so that values (batch-norm
    statistics included) do not depend on how the step is taken.

    :meth:`loss` (all stages in one dict) is derived from :meth:`loss_stages` and cannot
    be overridden, so that the staged step and the one-graph loss can never differ: a
    subclass changes its losses in :meth:`loss_stages`.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "loss" in vars(cls):
            raise TypeError(
                f"{cls.__name__} overrides loss(), but a StagedLosses model's loss() is "
                f"all of its loss_stages() in one dict and the engine's training step "
                f"uses loss_stages() only: change the losses in loss_stages() instead"
            )

    @abc.abstractmethod
    def loss_stages(self, inputs: Tensor, labels: Tensor) -> Iterator[dict]:
        """Yield the training losses of one batch, one stage (a dict) at a time."""

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        """Every stage's losses of :meth:`loss_stages` in one dict (one graph)."""
        losses: dict = {}
        for stage in self.loss_stages(inputs, labels):
            losses.update(stage)
        return losses
