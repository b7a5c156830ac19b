"""The training step of a model that declares its losses in stages
(:class:`mixbench.models.stages.StagedLosses`: AutoMix, SAMix, AdAutoMix, MergeMix), in one place.

:func:`train_step_in_stages` is that step. mixbench's runner takes it for such a model
in every run: :class:`StagedStep` wraps the model of a single-process run (mmengine calls
``runner.model.train_step``), :class:`~mixbench.engine.ddp.StagedDistributedDataParallel`
runs it under DDP with the gradients averaged over the processes before each optimizer
step. Any other model takes mmengine's own step.
"""

from __future__ import annotations

from collections.abc import Callable

from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import nn

from mixbench.models.stages import StagedLosses
from mixbench.registry import MODEL_WRAPPERS

from .compat import backward_part, count_iteration


def train_step_in_stages(
    model: BaseModel, data, optim_wrapper: OptimWrapper, sync_gradients: Callable[[], None] | None = None
) -> dict:
    """One training iteration of a :class:`StagedLosses` model: one backward per stage of
    ``model.loss_stages``, then (when the wrapper's gradient accumulation says so) one
    optimizer step. Returns the logged losses (``loss``, the sum, then each named loss).

    The gradient of a sum is the sum of the gradients, so this computes what one backward
    of all the losses computes (up to the order of floating-point additions; under bf16
    autocast the stages' gradients are summed in the parameters' float32), but only one
    stage's graph is alive at a time. Each stage is built inside
    ``optim_wrapper.optim_context`` (the autocast of AmpOptimWrapper and
    AutocastOptimWrapper) and backpropagated through ``optim_wrapper.backward`` of
    ``optim_wrapper.scale_loss(loss)`` (AmpOptimWrapper's loss scaling, the
    gradient-accumulation factor); the wrapper counts the iteration once, as
    ``update_params`` does, so ``accumulative_counts`` holds. The optimizer step is the
    wrapper's (gradient clipping of ``clip_grad`` included, after the gradients are
    complete). ``sync_gradients``, when given, is called once the gradients of an update
    are complete, just before the optimizer step (the DDP wrapper's all-reduce).
    """
    if not isinstance(model, StagedLosses):
        raise TypeError(
            f"train_step_in_stages needs a model that declares its loss stages "
            f"(a mixbench.models.stages.StagedLosses), got {type(model).__name__}"
        )
    with optim_wrapper.optim_context(model):
        data = model.data_preprocessor(data, True)
        stages = model.loss_stages(data["inputs"], data["data_samples"])
    logged: dict = {}
    while True:
        with optim_wrapper.optim_context(model):
            stage = next(stages, None)
        if stage is None:
            break
        loss, _ = model.parse_losses(stage)
        backward_part(optim_wrapper, optim_wrapper.scale_loss(loss))
        logged.update({k: v.detach() for k, v in stage.items()})
        del stage, loss
    count_iteration(optim_wrapper)
    if optim_wrapper.should_update():
        if sync_gradients is not None:
            sync_gradients()
        optim_wrapper.step()
        optim_wrapper.zero_grad()
    return model.parse_losses(logged)[1]


@MODEL_WRAPPERS.register_module()
class StagedStep(nn.Module):
    """The wrapper of a :class:`StagedLosses` model in a single-process run: its
    ``train_step`` is :func:`train_step_in_stages`; validation, test and forward are the
    model's. mmengine treats it as any model wrapper (checkpoints hold the model's own
    state dict, hooks reach the model as ``runner.model.module``)."""

    def __init__(self, module: BaseModel):
        super().__init__()
        if not isinstance(module, StagedLosses):
            raise TypeError(
                f"StagedStep wraps a model that declares its loss stages "
                f"(a mixbench.models.stages.StagedLosses), got {type(module).__name__}"
            )
        self.module = module

    def train_step(self, data, optim_wrapper: OptimWrapper) -> dict:
        return train_step_in_stages(self.module, data, optim_wrapper)

    def val_step(self, data) -> list:
        return self.module.val_step(data)

    def test_step(self, data) -> list:
        return self.module.test_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
