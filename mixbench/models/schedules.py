"""What a method declares about the schedules of its own parts; the engine applies them.

A classifier with parts that follow their own schedule (AutoMix's EMA momentum and Mix
Block learning rate, AdAutoMix's adversarial step counter) subclasses
:class:`ScheduledParts` and returns, from :meth:`ScheduledParts.schedules`, a list built
from its constructor arguments of:

* :class:`ValueSchedule`: a value set on the model before each training iteration;
* :class:`LearningRateSchedule`: the learning rate of the optimizer groups that hold some
  parameters (and nothing else), set before each training iteration;
* :class:`AfterIteration`: an action after each training iteration (the EMA update).

Every value is a function of the iteration and the length of training alone, so a resumed
run continues exactly. The engine's :class:`mixbench.engine.schedules.MethodScheduleHook`,
which mixbench's runner installs for every model that is a :class:`ScheduledParts`, is the
one place where they are applied; configs list no schedule hook.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ValueSchedule:
    """``apply(value(iteration, max_iters))`` before each training iteration.

    Attributes:
        name: what is scheduled (for messages), e.g. ``ema_momentum``.
        value: ``(iteration, max_iters) -> value``.
        apply: sets the value on the model.
    """

    name: str
    value: Callable[[int, int], Any]
    apply: Callable[[Any], None]


@dataclass(frozen=True)
class LearningRateSchedule:
    """The learning rate ``value(iteration, max_iters)`` of the optimizer's parameter groups
    that hold ``parameters()``, set before each training iteration. Those parameters must
    fill groups of their own (e.g. ``paramwise_cfg: {custom_keys: {mix_block: {lr_mult:
    1.0}}}``); a group that mixes them with others is an error before training.

    Attributes:
        name: what is scheduled (for messages), e.g. ``mix_block_lr``.
        parameters: returns the parameters whose groups are scheduled.
        value: ``(iteration, max_iters) -> learning rate``.
        hint: how to give those parameters groups of their own (said in the error).
    """

    name: str
    parameters: Callable[[], Iterable[nn.Parameter]]
    value: Callable[[int, int], float]
    hint: str = ""


@dataclass(frozen=True)
class AfterIteration:
    """``action()`` after each training iteration (after the optimizer step).

    Attributes:
        name: what is done (for messages), e.g. ``ema_update``.
        action: the action.
    """

    name: str
    action: Callable[[], None]


class ScheduledParts(abc.ABC):
    """Mixin of a model whose own parts follow schedules (see the module docstring)."""

    @abc.abstractmethod
    def schedules(self) -> list:
        """The model's :class:`ValueSchedule`, :class:`LearningRateSchedule` and
        :class:`AfterIteration` entries, applied in this order within each kind."""
