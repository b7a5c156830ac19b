"""Every place where mixbench relies on mmengine beyond its public API, in one module.

mixbench pins onedl-mmengine (requirements.txt). What it relies on that mmengine does not
promise, and why:

* ``Runner._log_env(env_cfg)``, called once from ``Runner.__init__``: mmengine logs
  PyTorch's whole build configuration and the config there; :class:`RunnerBase` turns it
  into the public :meth:`RunnerBase.log_environment`, which :class:`MixbenchRunner
  <mixbench.engine.runner.MixbenchRunner>` overrides.
* ``CheckpointHook._save_checkpoint_with_step(runner, step, meta)``, the one place where
  mmengine's hook writes a checkpoint and deletes old ones: :class:`CheckpointHookBase`
  turns it into the public :meth:`CheckpointHookBase.save_checkpoint_with_step`, which
  :class:`SafeCheckpointHook <mixbench.engine.hooks.SafeCheckpointHook>` overrides.
* ``OptimWrapper._inner_count``, the iteration counter that ``backward`` advances and that
  ``should_update``/``should_sync``/``scale_loss`` read (gradient accumulation): a staged
  training step backpropagates several times per iteration (:func:`backward_part`) and
  counts the iteration once (:func:`count_iteration`).
* ``Runner.build_dataloader`` looks a ``collate_fn`` type up with a plain ``get`` on
  mmengine's root FUNCTIONS registry, which never searches child registries such as
  mixbench's: :meth:`RunnerBase.build_dataloader` resolves the name in mixbench's FUNCTIONS
  registry first (its parents, i.e. mmengine's own collate functions, included) and hands
  mmengine the function itself, which ``build_dataloader`` accepts in place of a name.

:func:`check_mmengine` lists what of this the installed mmengine no longer offers;
``tests/engine/test_compat.py`` fails with that list. Anyone who bumps mmengine adapts
this module and nothing else.
"""

from __future__ import annotations

import copy
import inspect

import mmengine
from mmengine.hooks import CheckpointHook
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import Runner
from torch import Tensor

from mixbench.registry import FUNCTIONS


class RunnerBase(Runner):
    """mmengine's Runner with its private extension point for the environment log made
    public (:meth:`log_environment`) and collate functions looked up in mixbench's
    registry (:meth:`build_dataloader`)."""

    def _log_env(self, env_cfg: dict) -> None:
        self.log_environment(env_cfg)

    def log_environment(self, env_cfg: dict) -> None:
        """Log the run's environment once, while the Runner is built (mmengine's default:
        the system environment, PyTorch's build configuration and the config)."""
        super()._log_env(env_cfg)

    @staticmethod
    def build_dataloader(dataloader, seed: int | None = None, diff_rank_seed: bool = False):
        """mmengine's ``Runner.build_dataloader`` with a ``collate_fn`` type given by name
        resolved in mixbench's FUNCTIONS registry (then mmengine's)."""
        if isinstance(dataloader, dict) and isinstance(dataloader.get("collate_fn"), dict):
            collate = dict(dataloader["collate_fn"])
            if isinstance(collate.get("type"), str):
                name = collate["type"]
                collate["type"] = FUNCTIONS.get(name)
                if collate["type"] is None:
                    from mixbench.registry import unknown_type_message

                    raise KeyError(unknown_type_message(FUNCTIONS, name, "collate_fn.type"))
                dataloader = {**copy.copy(dataloader), "collate_fn": collate}
        return Runner.build_dataloader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)


class CheckpointHookBase(CheckpointHook):
    """mmengine's CheckpointHook whose checkpoint writing (a private method in mmengine)
    is the public :meth:`save_checkpoint_with_step`."""

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        self.save_checkpoint_with_step(runner, step, meta)

    def save_checkpoint_with_step(self, runner, step, meta) -> None:
        """Write the checkpoint of ``step`` (an epoch or an iteration) with ``meta`` and
        drop the checkpoints beyond ``max_keep_ckpts`` (mmengine's default)."""
        super()._save_checkpoint_with_step(runner, step, meta)


def backward_part(optim_wrapper: OptimWrapper, loss: Tensor) -> None:
    """``optim_wrapper.backward(loss)`` (its loss scaling included) for one part of an
    iteration's loss: the iteration counter, which ``backward`` advances, is put back, so
    that gradient accumulation still counts iterations (see :func:`count_iteration`)."""
    optim_wrapper.backward(loss)
    optim_wrapper._inner_count -= 1


def count_iteration(optim_wrapper: OptimWrapper) -> None:
    """Count one iteration whose loss :func:`backward_part` backpropagated in parts, as
    one ``backward`` of the whole loss would have (before ``should_update``)."""
    optim_wrapper._inner_count += 1


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _parameters(obj) -> list | None:
    try:
        return list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return None


def check_mmengine() -> list:
    """What this module relies on that the installed mmengine no longer offers: one
    sentence per problem, naming the mmengine object and what mixbench uses it for (an
    empty list for the pinned version)."""
    problems = []

    def expect(ok: bool, what: str, used_for: str) -> None:
        if not ok:
            problems.append(
                f"mmengine {mmengine.__version__}: {what}; mixbench relies on it for "
                f"{used_for} (adapt mixbench/engine/compat.py)"
            )

    expect(
        _parameters(getattr(Runner, "_log_env", None)) == ["self", "env_cfg"],
        "Runner._log_env(self, env_cfg) is gone or takes other arguments",
        "its short environment log (MixbenchRunner.log_environment)",
    )
    expect(
        "self._log_env(" in _source(Runner.__init__),
        "Runner.__init__ no longer calls self._log_env(...)",
        "its short environment log (MixbenchRunner.log_environment)",
    )
    expect(
        _parameters(getattr(CheckpointHook, "_save_checkpoint_with_step", None))
        == ["self", "runner", "step", "meta"],
        "CheckpointHook._save_checkpoint_with_step(self, runner, step, meta) is gone or takes "
        "other arguments",
        "atomic checkpoints kept in a safe order (SafeCheckpointHook)",
    )
    expect(
        "self._save_checkpoint_with_step(" in _source(CheckpointHook._save_checkpoint),
        "CheckpointHook._save_checkpoint no longer writes through _save_checkpoint_with_step",
        "atomic checkpoints kept in a safe order (SafeCheckpointHook)",
    )
    for cls in (OptimWrapper, AmpOptimWrapper):
        expect(
            "self._inner_count += 1" in _source(cls.backward),
            f"{cls.__name__}.backward no longer advances self._inner_count by one",
            "gradient accumulation in the staged training step (backward_part)",
        )
    for method in ("should_update", "should_sync", "scale_loss"):
        expect(
            "self._inner_count" in _source(getattr(OptimWrapper, method, None)),
            f"OptimWrapper.{method} no longer reads self._inner_count",
            "gradient accumulation in the staged training step (count_iteration)",
        )
    expect(
        _parameters(Runner.build_dataloader) == ["dataloader", "seed", "diff_rank_seed"],
        "Runner.build_dataloader(dataloader, seed, diff_rank_seed) takes other arguments",
        "collate functions registered in mixbench's registry (RunnerBase.build_dataloader)",
    )
    expect(
        "collate_fn = collate_fn_type" in _source(Runner.build_dataloader),
        "Runner.build_dataloader no longer accepts a collate function in place of its name",
        "collate functions registered in mixbench's registry (RunnerBase.build_dataloader)",
    )
    return problems
