"""MethodScheduleHook applies what a model declares in schedules() (mixbench.models.schedules):
values and learning rates from the iteration alone before each iteration, actions after it,
with clear errors for parameters without groups of their own and for undeclared models."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mixbench.engine import MethodScheduleHook
from mixbench.engine.staged import StagedStep
from mixbench.models.schedules import AfterIteration, LearningRateSchedule, ScheduledParts, ValueSchedule


class Toy(ScheduledParts, nn.Module):
    def __init__(self, extra=()):
        super().__init__()
        self.body, self.part = nn.Linear(2, 2), nn.Linear(2, 1)
        self.value, self.actions, self.extra = None, [], list(extra)

    def schedules(self):
        return [
            ValueSchedule("value", lambda it, total: it / total, lambda v: setattr(self, "value", v)),
            LearningRateSchedule(
                "part_lr",
                self.part.parameters,
                lambda it, total: 1.0 - it / total,
                hint="Give the part a group of its own.",
            ),
            AfterIteration("count", lambda: self.actions.append(self.value)),
            *self.extra,
        ]


def runner(model, optimizer, it=0, total=10):
    return SimpleNamespace(
        model=model, iter=it, max_iters=total, optim_wrapper=SimpleNamespace(optimizer=optimizer)
    )


def grouped(model):
    return torch.optim.SGD([{"params": model.body.parameters()}, {"params": model.part.parameters()}], lr=0.1)


def test_values_and_learning_rates_from_the_iteration_then_actions():
    model = Toy()
    opt = grouped(model)
    hook = MethodScheduleHook()
    hook.before_train(runner(model, opt))
    for it in (3, 7):
        r = runner(model, opt, it)
        hook.before_train_iter(r, 0)
        assert model.value == it / 10
        assert opt.param_groups[1]["lr"] == pytest.approx(1 - it / 10) and opt.param_groups[0]["lr"] == 0.1
        hook.after_train_iter(r, 0)
    assert model.actions == [0.3, 0.7]


def test_a_wrapped_model_is_reached():
    class Wrapped(StagedStep):  # StagedStep checks the module's stages; here only the wrapping matters
        def __init__(self, module):
            nn.Module.__init__(self)
            self.module = module

    model = Toy()
    opt = grouped(model)
    hook = MethodScheduleHook()
    hook.before_train(runner(Wrapped(model), opt))
    hook.before_train_iter(runner(Wrapped(model), opt, 5), 0)
    assert model.value == 0.5


def test_errors_name_the_model_and_the_schedule():
    model = Toy()
    hook = MethodScheduleHook()
    with pytest.raises(
        ValueError,
        match="Toy's part_lr schedule needs its parameters in optimizer groups "
        "of their own.*Give the part a group of its own",
    ):
        hook.before_train(runner(model, torch.optim.SGD(model.parameters(), lr=0.1)))
    with pytest.raises(ValueError, match="Toy's part_lr schedule found none of its parameters"):
        hook.before_train(runner(model, torch.optim.SGD(model.body.parameters(), lr=0.1)))
    with pytest.raises(
        TypeError,
        match=r"Toy.schedules\(\) returned 'momentum'; a schedule is one of "
        "ValueSchedule, LearningRateSchedule, AfterIteration",
    ):
        hook.before_train(runner(Toy(extra=["momentum"]), grouped(model)))
    with pytest.raises(TypeError, match="Linear declares none"):
        hook.before_train(runner(nn.Linear(1, 1), grouped(model)))
