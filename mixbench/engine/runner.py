"""Glue between a mixbench config and mmengine's Runner: checks, run identity, DDP on CPU,
atomic checkpoints."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mixbench.checkpoint import use_for_mmengine
from mixbench.config import ConfigError, config_hash, did_you_mean, dump_config, get_path
from mixbench.data.catalog import check_num_classes
from mixbench.fingerprint import backbone_settings, method_settings
from mixbench.method import check_model_section, method_name, resolve_method
from mixbench.models.stages import StagedLosses
from mixbench.registry import (
    BATCH_AUGMENTS,
    DATA_SAMPLERS,
    DATASETS,
    HOOKS,
    LOG_PROCESSORS,
    LOOPS,
    METRICS,
    MIXERS,
    MODELS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    TRANSFORMS,
    VISBACKENDS,
    UnknownTypeError,
    build_mixer,
    check_options,
)

from .compat import RunnerBase
from .schedules import MethodScheduleHook, scheduled_model
from .staged import StagedStep

# every checkpoint mmengine loads in a mixbench process (resume, load_from, test) is
# loaded weights-only; mmengine's own loader retries a refused file with weights_only=False
use_for_mmengine()

REQUIRED_KEYS = ("model", "train_dataloader", "val_dataloader", "val_evaluator", "optim_wrapper", "train_cfg")

#: Every top-level key a config may have: what mmengine's Runner reads (``Runner.from_cfg``
#: and the ``cfg.get`` calls of its methods), what mixbench reads (``meta``, ``logging``,
#: ``result``, ``method``), and the keys the config loader itself keeps (``_source_``).
#: Anything else is a typo (``trian_cfg``) and is refused with the closest name.
RUNNER_KEYS = frozenset(
    {
        "model",
        "work_dir",
        "train_dataloader",
        "val_dataloader",
        "test_dataloader",
        "train_cfg",
        "val_cfg",
        "test_cfg",
        "auto_scale_lr",
        "optim_wrapper",
        "param_scheduler",
        "val_evaluator",
        "test_evaluator",
        "default_hooks",
        "custom_hooks",
        "data_preprocessor",
        "load_from",
        "resume",
        "launcher",
        "env_cfg",
        "log_processor",
        "log_level",
        "visualizer",
        "default_scope",
        "randomness",
        "experiment_name",
        "model_wrapper_cfg",
        "sync_bn",
        "find_unused_parameters",
        "activation_checkpointing",
        "efficient_conv_bn_eval",
        "compile",
    }
)
MIXBENCH_KEYS = frozenset({"meta", "logging", "result", "method", "_source_", "_base_"})
TOP_LEVEL_KEYS = RUNNER_KEYS | MIXBENCH_KEYS

# where a component lives -> (its registry, the type the builder uses when none is given,
# the constructor arguments the builder fills itself, keys the builder consumes itself)
COMPONENT_SLOTS = {
    "model.backbone": (MODELS, None, (), ()),
    "model.neck": (MODELS, None, (), ()),
    "model.head": (MODELS, None, ("in_channels",), ()),
    "model.loss": (MODELS, None, (), ()),
    "model.data_preprocessor": (MODELS, "ClassifierDataPreprocessor", (), ()),
    "train_dataloader.dataset": (DATASETS, None, (), ()),
    "val_dataloader.dataset": (DATASETS, None, (), ()),
    "test_dataloader.dataset": (DATASETS, None, (), ()),
    "train_dataloader.sampler": (DATA_SAMPLERS, None, ("dataset", "seed"), ()),
    "val_dataloader.sampler": (DATA_SAMPLERS, None, ("dataset", "seed"), ()),
    "test_dataloader.sampler": (DATA_SAMPLERS, None, ("dataset", "seed"), ()),
    "val_evaluator": (METRICS, None, (), ()),
    "test_evaluator": (METRICS, None, (), ()),
    "optim_wrapper": (OPTIM_WRAPPERS, "OptimWrapper", (), ("paramwise_cfg", "constructor")),
    "optim_wrapper.optimizer": (OPTIMIZERS, None, ("params",), ()),
    "train_cfg": (LOOPS, "EpochBasedTrainLoop", ("runner", "dataloader"), ("by_epoch",)),
    "val_cfg": (LOOPS, "ValLoop", ("runner", "dataloader", "evaluator"), ()),
    "test_cfg": (LOOPS, "TestLoop", ("runner", "dataloader", "evaluator"), ()),
    "log_processor": (LOG_PROCESSORS, "LogProcessor", (), ()),
    # the method section (mixbench.method): the classifier gets the recipe's parts
    "method.classifier": (
        MODELS,
        "MixupClassifier",
        ("backbone", "head", "neck", "loss", "mixer", "data_preprocessor"),
        (),
    ),
    "method.mixer": (MIXERS, None, (), ()),
    "method.loss": (MODELS, None, (), ()),
}
LIST_SLOTS = {
    "param_scheduler": (PARAM_SCHEDULERS, ("optimizer",), ("convert_to_iter_based",)),
    "custom_hooks": (HOOKS, (), ()),
    "method.hooks": (HOOKS, (), ()),
    "model.data_preprocessor.batch_augments": (BATCH_AUGMENTS, (), ()),
    "model.data_preprocessor.normalized_batch_augments": (BATCH_AUGMENTS, (), ()),
    "train_dataloader.dataset.pipeline": (TRANSFORMS, (), ()),
    "val_dataloader.dataset.pipeline": (TRANSFORMS, (), ()),
    "test_dataloader.dataset.pipeline": (TRANSFORMS, (), ()),
    "visualizer.vis_backends": (VISBACKENDS, (), ()),
}


def _where(cfg: dict) -> str:
    return cfg.get("_source_", "<config>")


def _positive_int(cfg: dict, key: str, required: bool = True) -> None:
    value = get_path(cfg, key)
    if value is None:
        if required:
            raise ConfigError(f"{_where(cfg)}: missing required key {key!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_where(cfg)}: {key} must be an integer, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ConfigError(f"{_where(cfg)}: {key} must be > 0, got {value}")


def check_top_level_keys(cfg: dict) -> None:
    """Refuse a top-level key that neither mmengine's Runner nor mixbench reads, naming the
    closest known key (``trian_cfg`` -> ``train_cfg``)."""
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{_where(cfg)}: unknown top-level key {key!r}{did_you_mean(str(key), TOP_LEVEL_KEYS)} "
                "It would be ignored; correct or remove it. Known keys: "
                f"{', '.join(sorted(k for k in TOP_LEVEL_KEYS if not k.startswith('_')))}"
            )


def _check_component(
    registry, node, where: str, source: str, default_type=None, provided=(), extra=()
) -> None:
    try:
        check_options(
            registry, node, where, source, provided=provided, default_type=default_type, extra=extra
        )
    except UnknownTypeError as e:
        raise ConfigError(str(e)) from None


def _check_evaluator(cfg: dict, key: str) -> None:
    node = cfg.get(key)
    nodes = node if isinstance(node, list) else [node]
    if not node or not all(isinstance(n, dict) and n.get("type") for n in nodes):
        raise ConfigError(
            f"{_where(cfg)}: {key} must name a metric, got {node!r}; e.g. "
            f"{key}: {{type: Accuracy, topk: [1, 5]}} (as configs/_base_/datasets/*.yaml set it)"
        )


def validate_config(cfg: dict) -> None:
    """Fail before training, naming the key and the config file, on: a missing required
    section, an unknown top-level key, an unknown ``type`` (with the closest registered
    names), an option a component does not take or a required one it lacks (with the
    closest names, :func:`mixbench.registry.check_options`), a wrong value type, an
    impossible value (epochs/batch size <= 0, a mixer's alpha < 0, ...), or a head whose
    number of classes is not the dataset's (:func:`mixbench.data.catalog.check_num_classes`).
    ``cfg`` is the config as written (with its ``method:`` section); its values are checked as it will run,
    with the method assembled into the model (:func:`mixbench.method.resolve_method`)."""
    src = _where(cfg)
    check_model_section(cfg)
    for key in REQUIRED_KEYS:
        if key not in cfg:
            raise ConfigError(f"{src}: missing required section {key!r} (is a _base_ file missing?)")
    check_top_level_keys(cfg)
    for key in REQUIRED_KEYS:
        if key != "val_evaluator" and not isinstance(cfg[key], dict):
            raise ConfigError(f"{src}: section {key!r} must be a mapping, got {cfg[key]!r}")
    _check_evaluator(cfg, "val_evaluator")
    if "test_evaluator" in cfg:
        _check_evaluator(cfg, "test_evaluator")
    for key, (registry, default_type, provided, extra) in COMPONENT_SLOTS.items():
        node = get_path(cfg, key)
        if isinstance(node, dict):
            _check_component(registry, node, key, src, default_type, provided, extra)
    for key, (registry, provided, extra) in LIST_SLOTS.items():
        nodes = get_path(cfg, key) or []
        for i, node in enumerate([nodes] if isinstance(nodes, dict) else nodes):
            if isinstance(node, dict):
                _check_component(registry, node, f"{key}[{i}]", src, provided=provided, extra=extra)
    for name, node in (cfg.get("default_hooks") or {}).items():
        if isinstance(node, dict):  # None disables a default hook
            _check_component(HOOKS, node, f"default_hooks.{name}", src)
    check_num_classes(cfg)
    cfg = resolve_method(cfg)
    _positive_int(cfg, "train_cfg.max_epochs")
    _positive_int(cfg, "train_cfg.val_interval", required=False)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if loader in cfg:
            _positive_int(cfg, f"{loader}.batch_size")
            workers = get_path(cfg, f"{loader}.num_workers", 0)
            if not isinstance(workers, int) or workers < 0:
                raise ConfigError(f"{src}: {loader}.num_workers must be an integer >= 0, got {workers!r}")
    lr = get_path(cfg, "optim_wrapper.optimizer.lr")
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr < 0):
        raise ConfigError(f"{src}: optim_wrapper.optimizer.lr must be a number >= 0, got {lr!r}")
    mixer = get_path(cfg, "model.mixer")
    if mixer is not None:
        try:
            build_mixer(mixer)
        except UnknownTypeError as e:
            raise ConfigError(f"{src}: {e}") from None
        except (ValueError, TypeError, FileNotFoundError) as e:  # a missing local checkpoint too
            raise ConfigError(f"{src}: method.mixer ({mixer.get('type')}): {e}") from None


def run_identity(cfg: dict, work_dir: str) -> dict:
    """The ``run`` section of result.json, from the config's ``meta`` and its components."""
    meta = cfg.get("meta") or {}
    backbone = get_path(cfg, "model.backbone", {}) or {}
    dataset = get_path(cfg, "train_dataloader.dataset.type", "unknown")
    return {
        "name": meta.get("name") or Path(work_dir).name,
        "method": meta.get("method") or method_name(cfg),
        "dataset": meta.get("dataset") or str(dataset).lower(),
        "backbone": meta.get("backbone") or str(backbone.get("type", "unknown")),
        "epochs": get_path(cfg, "train_cfg.max_epochs"),
        "seed": get_path(cfg, "randomness.seed"),
        "config": "config.yaml",
        "config_hash": config_hash(cfg),
        "work_dir": str(work_dir),
        "tags": meta.get("tags") or {},
        "method_settings": method_settings(cfg),  # the settings fingerprint (schema 2)
        "backbone_settings": backbone_settings(cfg),
    }


def cpu_distributed_env(launcher: str) -> None:
    """Initialise a gloo process group when training distributed without CUDA.

    mmengine's launcher calls ``torch.cuda.set_device``; on a CPU machine we initialise the
    group ourselves (torchrun's env:// variables, or Slurm's) and mmengine then sees an
    initialised group and skips its own initialisation.
    """
    if dist.is_initialized():
        return
    if launcher == "slurm":
        os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
        os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        if "MASTER_ADDR" not in os.environ:
            nodes = subprocess.run(
                ["scontrol", "show", "hostnames", os.environ["SLURM_NODELIST"]],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            os.environ["MASTER_ADDR"] = nodes[0]
        os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group(backend="gloo")


def prepare_runner_config(
    cfg: dict,
    work_dir: str,
    launcher: str = "none",
    resume: str | None = None,
    amp: bool = False,
    deterministic: bool = False,
    seed: int | None = None,
) -> dict:
    """The mmengine Runner config for a mixbench config: work dir, seed, hooks, logging
    backends, AMP, resume and the DDP wrapper (``device_ids=None`` on CPU)."""
    cfg = resolve_method(cfg)
    cfg["work_dir"] = str(work_dir)
    cfg["launcher"] = launcher
    randomness = dict(cfg.get("randomness") or {})
    if seed is not None:
        randomness["seed"] = int(seed)
    randomness.setdefault("seed", 0)
    if deterministic:
        randomness["deterministic"] = True
    cfg["randomness"] = randomness
    if amp:
        wrapper = dict(cfg["optim_wrapper"])
        if torch.cuda.is_available():
            wrapper["type"] = "AmpOptimWrapper"
            wrapper.setdefault("dtype", "float16")
        else:
            wrapper["type"] = "AutocastOptimWrapper"
            wrapper.setdefault("dtype", "bfloat16")
        cfg["optim_wrapper"] = wrapper
    if resume == "auto":
        cfg["resume"], cfg["load_from"] = True, None
    elif resume:
        cfg["resume"], cfg["load_from"] = True, resume
    logging_cfg = cfg.pop("logging", None) or {}
    backends = [{"type": "LocalVisBackend"}]
    if logging_cfg.get("tensorboard"):
        backends.append({"type": "TensorboardVisBackend"})
    if logging_cfg.get("wandb"):
        os.environ.setdefault("WANDB_MODE", "offline")
        backends.append(
            {
                "type": "WandbVisBackend",
                "init_kwargs": {
                    "project": logging_cfg.get("wandb_project", "mixbench"),
                    "name": Path(work_dir).name,
                },
            }
        )
    cfg.setdefault("visualizer", {"type": "Visualizer", "vis_backends": backends})
    if launcher != "none":
        # mmengine's DDP wrapper and defaults, plus the staged step of the learnable mixers
        # (mixbench/engine/ddp.py); on the CPU: gloo and no device ids. Buffers (BN
        # statistics) are not broadcast at each forward, as mmengine's default wrapper does
        # with broadcast_buffers=False (deprecated since torch 2.13; this is its successor)
        wrapper = {
            "type": "mixbench.StagedDistributedDataParallel",
            "forward_sync_buffers": False,
            "find_unused_parameters": bool(cfg.get("find_unused_parameters", False)),
        }
        cfg["model_wrapper_cfg"] = {**wrapper, **(cfg.get("model_wrapper_cfg") or {})}
        if not torch.cuda.is_available():
            cfg["model_wrapper_cfg"]["device_ids"] = None
            cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    max_epochs = cfg["train_cfg"]["max_epochs"]
    schedulers = cfg.get("param_scheduler") or []
    for sched in [schedulers] if isinstance(schedulers, dict) else schedulers:
        # a cosine schedule without T_max spans the rest of training (follows max_epochs)
        if sched.get("type") in ("CosineAnnealingLR", "CosineAnnealingMomentum") and "T_max" not in sched:
            sched["T_max"] = max_epochs - sched.get("begin", 0)
            sched.setdefault("end", max_epochs)
    result_cfg = cfg.pop("result", None) or {}
    hooks = [
        h for h in cfg.get("custom_hooks", []) if h.get("type") not in ("ResultJsonHook", "EpochSeedHook")
    ]
    hooks.append({"type": "EpochSeedHook", "seed": randomness["seed"]})
    hooks.append(
        {
            "type": "ResultJsonHook",
            "run": run_identity(cfg, work_dir),
            "median_last_n": result_cfg.get("median_last_n", 10),
        }
    )
    cfg["custom_hooks"] = hooks
    for part in ("dataloader", "evaluator"):
        cfg.setdefault(f"test_{part}", copy.deepcopy(cfg[f"val_{part}"]))
    cfg.setdefault("val_cfg", {})
    cfg.setdefault("test_cfg", {})
    cfg.setdefault("default_scope", "mixbench")
    cfg.pop("meta", None)
    cfg.pop("method", None)
    cfg.pop("_source_", None)
    return cfg


class MixbenchRunner(RunnerBase):
    """mmengine Runner whose checkpoints are written atomically: to a temp file in the same
    folder, then renamed, so a torn checkpoint never replaces a good one.

    The training step of a model that declares its loss stages
    (:class:`~mixbench.models.stages.StagedLosses`) is the engine's
    (:func:`~mixbench.engine.staged.train_step_in_stages`): :meth:`wrap_model` wraps such a
    model in :class:`~mixbench.engine.staged.StagedStep` when the run is not distributed
    (distributed runs use :class:`~mixbench.engine.ddp.StagedDistributedDataParallel`). A
    model that declares schedules for its own parts
    (:class:`~mixbench.models.schedules.ScheduledParts`) gets the one
    :class:`~mixbench.engine.schedules.MethodScheduleHook` (:meth:`register_hooks`).

    It also keeps the log short: the environment is logged in a few lines (not PyTorch's
    whole build configuration), and the config is not dumped again as mmengine's
    ``<timestamp>.py``: :func:`build_runner` already wrote it as ``config.yaml``."""

    def log_environment(self, env_cfg: dict) -> None:
        import platform

        import mmengine

        gpus = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
        lines = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "mmengine": mmengine.__version__,
            "device": ", ".join(gpus) or "cpu",
            "cpu threads": torch.get_num_threads(),
            "seed": self.seed,
            "deterministic": self.deterministic,
            "launcher": self.launcher,
            "world size": self.world_size,
            "config": os.path.join(self.work_dir, "config.yaml"),
        }
        self.logger.info("environment: " + "; ".join(f"{k} {v}" for k, v in lines.items()))

    def wrap_model(self, model_wrapper_cfg: dict | None, model):
        model = super().wrap_model(model_wrapper_cfg, model)
        if not is_model_wrapper(model) and isinstance(model, StagedLosses):
            model = StagedStep(model)
        return model

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        if scheduled_model(self.model) is not None:
            if any(isinstance(h, MethodScheduleHook) for h in self.hooks):
                raise ValueError(
                    f"custom_hooks lists MethodScheduleHook, which the runner installs "
                    f"itself for {type(scheduled_model(self.model)).__name__}: remove it"
                )
            self.register_hook(MethodScheduleHook())

    def dump_config(self) -> None:
        """Nothing to do: ``config.yaml`` in the work dir is the run's config."""

    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        tmp_name = f".{filename}.tmp"
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
        except BaseException:  # a full disk: no torn temp file stays behind
            if is_main_process() and os.path.exists(os.path.join(out_dir, tmp_name)):
                os.unlink(os.path.join(out_dir, tmp_name))
            raise
        if is_main_process():  # mmengine writes checkpoints on rank 0 only
            os.replace(os.path.join(out_dir, tmp_name), os.path.join(out_dir, filename))


def build_runner(
    cfg: dict,
    work_dir: str,
    launcher: str = "none",
    resume: str | None = None,
    amp: bool = False,
    deterministic: bool = False,
    seed: int | None = None,
) -> MixbenchRunner:
    """Validate ``cfg``, write ``<work_dir>/config.yaml`` (rank 0) and build the Runner."""
    import mixbench.data  # noqa: F401  (registers datasets and transforms)
    import mixbench.engine  # noqa: F401  (registers hooks, metrics, optim wrappers)
    import mixbench.models  # noqa: F401  (registers models)

    if seed is not None:
        cfg = copy.deepcopy(cfg)
        cfg.setdefault("randomness", {})["seed"] = int(seed)
    validate_config(cfg)
    if launcher != "none" and not torch.cuda.is_available():
        cpu_distributed_env(launcher)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        dump_config(cfg, Path(work_dir) / "config.yaml")
    runner_cfg = prepare_runner_config(cfg, work_dir, launcher, resume, amp, deterministic, seed)
    return MixbenchRunner.from_cfg(Config(runner_cfg))


def result_hook(runner: Runner):
    from .hooks import ResultJsonHook

    for hook in runner.hooks:
        if isinstance(hook, ResultJsonHook):
            return hook
    return None
