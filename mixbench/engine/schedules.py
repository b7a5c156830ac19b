"""The one hook that applies the schedules a method declares for its own parts
(:class:`mixbench.models.schedules.ScheduledParts`: AutoMix's EMA momentum and Mix Block
learning rate, AdAutoMix's adversarial step). mixbench's runner installs it for every
model that declares schedules; configs never list it."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mixbench.models.schedules import AfterIteration, LearningRateSchedule, ScheduledParts, ValueSchedule
from mixbench.registry import HOOKS

KINDS = (ValueSchedule, LearningRateSchedule, AfterIteration)


def scheduled_model(model):
    """The model under a wrapper, when it declares schedules; else None."""
    model = model.module if is_model_wrapper(model) else model
    return model if isinstance(model, ScheduledParts) else None


@HOOKS.register_module()
class MethodScheduleHook(Hook):
    """Applies ``model.schedules()`` (:mod:`mixbench.models.schedules`):

    * before training, finds the optimizer groups of each :class:`LearningRateSchedule`
      (an error if its parameters share a group with others, or have none);
    * before each training iteration, sets every :class:`ValueSchedule` and
      :class:`LearningRateSchedule` from ``runner.iter`` and ``runner.max_iters``;
    * after each training iteration (after the optimizer step), runs every
      :class:`AfterIteration` action.

    Each value is a function of the iteration alone, so a resumed run continues exactly.
    """

    priority = "NORMAL"

    def __init__(self):
        self._schedules: list = []
        self._groups: dict = {}

    def before_train(self, runner) -> None:
        model = scheduled_model(runner.model)
        if model is None:
            raise TypeError(
                f"MethodScheduleHook applies the schedules a model declares "
                f"(mixbench.models.schedules.ScheduledParts); "
                f"{type(runner.model).__name__} declares none"
            )
        self._schedules = list(model.schedules())
        for s in self._schedules:
            if not isinstance(s, KINDS):
                raise TypeError(
                    f"{type(model).__name__}.schedules() returned {s!r}; a schedule is "
                    f"one of {', '.join(k.__name__ for k in KINDS)}"
                )
        self._groups = {
            id(s): self.param_groups(s, runner.optim_wrapper.optimizer, model)
            for s in self._schedules
            if isinstance(s, LearningRateSchedule)
        }

    @staticmethod
    def param_groups(schedule: LearningRateSchedule, optimizer, model) -> list:
        """The optimizer groups made of ``schedule.parameters()`` alone."""
        ids = {id(p) for p in schedule.parameters()}
        groups = []
        for group in optimizer.param_groups:
            inside = [id(p) in ids for p in group["params"]]
            if any(inside) and not all(inside):
                raise ValueError(
                    f"{type(model).__name__}'s {schedule.name} schedule needs its "
                    f"parameters in optimizer groups of their own, but one group mixes "
                    f"them with others. {schedule.hint}".rstrip()
                )
            if inside and all(inside):
                groups.append(group)
        if not groups:
            raise ValueError(
                f"{type(model).__name__}'s {schedule.name} schedule found none of its "
                f"parameters in the optimizer. {schedule.hint}".rstrip()
            )
        return groups

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        it, total = runner.iter, runner.max_iters
        for s in self._schedules:
            if isinstance(s, ValueSchedule):
                s.apply(s.value(it, total))
            elif isinstance(s, LearningRateSchedule):
                lr = s.value(it, total)
                for group in self._groups[id(s)]:
                    group["lr"] = lr

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        for s in self._schedules:
            if isinstance(s, AfterIteration):
                s.action()
