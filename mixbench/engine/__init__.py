"""mixbench.engine: mmengine Runner glue, hooks, metrics, optim wrappers, result.json."""

from .ddp import StagedDistributedDataParallel
from .hooks import EpochSeedHook, ResultJsonHook, SafeCheckpointHook
from .metrics import Accuracy
from .optim import AutocastOptimWrapper
from .runner import MixbenchRunner, build_runner, prepare_runner_config, validate_config
from .schedules import MethodScheduleHook
from .staged import StagedStep, train_step_in_stages

__all__ = [
    "Accuracy",
    "AutocastOptimWrapper",
    "EpochSeedHook",
    "ResultJsonHook",
    "SafeCheckpointHook",
    "MethodScheduleHook",
    "StagedDistributedDataParallel",
    "StagedStep",
    "MixbenchRunner",
    "build_runner",
    "prepare_runner_config",
    "train_step_in_stages",
    "validate_config",
]
