"""mixbench.engine: mmengine Runner glue, hooks, metrics, optim wrappers, result.json."""
from .ddp import StagedDistributedDataParallel
from .hooks import EpochSeedHook, ResultJsonHook, SafeCheckpointHook
from .metrics import Accuracy
from .optim import AutocastOptimWrapper
from .runner import MixbenchRunner, build_runner, prepare_runner_config, validate_config

__all__ = ["Accuracy", "AutocastOptimWrapper", "EpochSeedHook", "ResultJsonHook", "SafeCheckpointHook",
           "StagedDistributedDataParallel", "MixbenchRunner", "build_runner", "prepare_runner_config",
           "validate_config"]
