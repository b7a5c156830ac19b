"""Sweep files: a base config and axes to cross, expanded deterministically into runs.

A sweep file (``configs/sweeps/*.yaml``; paths inside it are relative to the file)::

    name: demo_digits                  # default: the file's stem
    work_root: work_dirs               # runs go to <work_root>/<name>/<dataset>/<backbone>/<leaf>/
    base: [../_base_/schedules/sgd_cosine_200e.yaml, ../_base_/runtime.yaml]
    axes:
      dataset:  {digits: ../_base_/datasets/digits.yaml}      # name -> file, or inline dict
      backbone: {resnet_w8: {_base_: ../_base_/models/resnet18_cifar.yaml,
                             model: {backbone: {depth: 8, width: 8}}}}
      method:                          # name -> method file, inline method, or {config: file, **overrides}
        Vanilla: {type: Vanilla}       # a bare mixer: the method {mixer: {type: Vanilla}}
        Mixup: {mixer: {type: Mixup, alpha: 1.0}}            # an inline method section
        CutMix: ../methods/cutmix.yaml                       # a method file (only `method:`)
        AutoMix-a1: {config: ../methods/automix.yaml, classifier.alpha: 1.0}   # file + overrides
      max_epochs: [2]
      seed: [0, 1, 2]
      optim_wrapper.optimizer.lr: [0.1, 0.05]   # any other config key (dotted)
    options: {train_dataloader.batch_size: 64}  # applied to every run
    exclude: [{method: CutMix, seed: 2}]        # a run matching every key of an entry is dropped
    resources:                                   # per run; per_cell entries override by match
      gpus: 1
      cpus: 4
      mem_gb: 16
      time_min: 120
      per_cell: [{match: {backbone: resnet50}, gpus: 4, time_min: 600}]

A run's config is composed in this order (later wins, with :func:`mixbench.config.merge`):
base files, backbone, dataset, method (the ``method:`` section replaced whole: its mixer, loss,
classifier, parameter groups and hooks, see :mod:`mixbench.method`; the axis name becomes
``method.name``), ``max_epochs``
(``train_cfg.max_epochs``, and every epoch-based scheduler's ``T_max``/``end`` that equalled
the old budget), ``seed`` (``randomness.seed``), the other axes, ``options``, and finally
``meta`` (name, method, dataset, backbone), so every run's result.json names its cell.
Any other axis is a dotted config key whose first part must be a key of the composed config
(``optim_wrapper.optimizer.lr``); anything else is refused with the closest name.

The expansion is deterministic: axes are crossed in the order dataset, backbone, method,
max_epochs, other keys (in file order), seed; names contain only the axis names and values,
so a run keeps its name and work dir however the file is reordered or extended.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixbench.config import (
    ConfigError,
    _read_yaml,
    config_hash,
    did_you_mean,
    get_path,
    load_config,
    merge,
    merge_config,
    options_to_dict,
)
from mixbench.method import METHOD_KEY, method_from_fragment, method_section
from mixbench.results import DEFAULT_LAST_N, TABLE_METRICS

NAMED_AXES = ("dataset", "backbone", "method")
SPECIAL_AXES = NAMED_AXES + ("max_epochs", "seed")
RESOURCE_KEYS = {"gpus": int, "cpus": int, "mem_gb": float, "time_min": int}
DEFAULT_RESOURCES = {"gpus": 0, "cpus": 1, "mem_gb": 4.0, "time_min": 60}
TOP_KEYS = {
    "name",
    "work_root",
    "base",
    "axes",
    "options",
    "exclude",
    "resources",
    "description",
    "leaderboard",
}
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class SweepError(ConfigError):
    """A sweep file that cannot be expanded; the message says where and what to write."""


@dataclass(frozen=True)
class Resources:
    """What one run asks for: GPUs, CPU cores, memory (GB) and a time limit (minutes)."""

    gpus: int = 0
    cpus: int = 1
    mem_gb: float = 4.0
    time_min: int = 60


@dataclass
class SweepRun:
    """One cell x seed of the grid: a name, a work dir and a resolved config."""

    name: str  # "<dataset>/<backbone>/<leaf>", unique in the sweep
    work_dir: Path
    axes: dict  # dataset, backbone, method, epochs, seed + other axis values
    config: dict  # the resolved config, ready to dump
    resources: Resources = field(default_factory=Resources)

    @property
    def cell(self) -> tuple:
        """Everything that identifies the run except its seed (runs of one cell cost alike)."""
        return tuple(sorted((k, repr(v)) for k, v in self.axes.items() if k != "seed"))

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


@dataclass
class Sweep:
    name: str
    source: Path
    work_root: Path
    runs: list
    #: the table metric of the leaderboard that ``run`` ends with: ``metric`` (one of
    #: mixbench.results.TABLE_METRICS) and ``last_n`` (N of ``median_last_n``)
    leaderboard: dict = field(default_factory=lambda: {"metric": "median_last_n", "last_n": DEFAULT_LAST_N})

    def run_by_name(self, name: str) -> SweepRun:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(f"no run named {name!r} in sweep {self.name}")


def _check_name(value: str, what: str, source: Path) -> str:
    value = str(value)
    if not _NAME_OK.match(value):
        raise SweepError(
            f"{source}: {what} name {value!r} must be letters, digits, '_', '.', "
            "'+' or '-' (it becomes part of a directory name)"
        )
    return value


def _fmt_value(value: Any) -> str:
    """A compact, filesystem-safe spelling of an axis value (0.1 -> '0.1', [1, 2] -> '1-2')."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt_value(v) for v in value)
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(value)).strip("-")
    return text or "x"


def _load_fragment(value: Any, sweep_dir: Path, where: str) -> dict:
    """A config fragment: a file path (with its own ``_base_``), or an inline dict whose
    ``_base_`` paths are relative to the sweep file."""
    if isinstance(value, str):
        cfg = load_config(sweep_dir / value)
        cfg.pop("_source_", None)
        return cfg
    if isinstance(value, Mapping):
        value = dict(value)
        bases = value.pop("_base_", [])
        bases = [bases] if isinstance(bases, str) else bases
        out: dict = {}
        for base in bases:
            out = merge(out, _load_fragment(base, sweep_dir, where))
        return merge(out, value)
    raise SweepError(f"{where}: expected a config file path or a mapping, got {value!r}")


def _method_dict(value: Any, sweep_dir: Path, where: str) -> dict:
    """A method entry: a method file (holding only ``method:``), an inline method section
    (``{mixer: {type: Mixup, alpha: 1.0}, loss: ...}``), a bare mixer (``{type: CutMix}``),
    or ``{config: file, **overrides}`` (dotted or nested keys of the method section, e.g.
    ``mixer.alpha: 0.2``). The whole method is carried: nothing of it is dropped."""
    overrides: dict = {}
    if isinstance(value, Mapping) and "config" in value:
        overrides = options_to_dict({k: v for k, v in value.items() if k != "config"})
        value = value["config"]
    if not isinstance(value, (str, Mapping)):
        raise SweepError(
            f"{where}: a method is a method file, an inline method section, a mixer "
            f"dict with 'type', or {{config: file, ...overrides}}; got {value!r}"
        )
    try:
        if isinstance(value, str):
            method = method_from_fragment(_load_fragment(value, sweep_dir, where), f"{where} ({value})")
        else:
            method = {"mixer": dict(value)} if "type" in value else dict(value)
        method = merge(method, overrides)
        method_section({METHOD_KEY: method, "_source_": where})  # unknown keys, missing types
    except SweepError:
        raise
    except ConfigError as e:
        raise SweepError(str(e)) from None
    return method


def _named_axis(axis: str, spec: Any, sweep_dir: Path, source: Path) -> list[tuple[str, dict]]:
    """``[(name, payload)]`` for dataset/backbone (payload: config fragment) or method
    (payload: method section). A mapping gives names; a list takes them from the payload."""
    where = f"{source}: axes.{axis}"
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, list):
        items = [(None, v) for v in spec]
    else:
        items = [(None, spec)]
    out = []
    for name, value in items:
        if axis == "method":
            payload = _method_dict(value, sweep_dir, f"{where}.{name or value}")
            name = name or method_section({METHOD_KEY: payload})["name"]
            payload = {**payload, "name": name}
        else:
            payload = _load_fragment(value, sweep_dir, f"{where}.{name or value}")
            name = (
                name
                or get_path(payload, f"meta.{axis}")
                or (Path(value).stem if isinstance(value, str) else None)
            )
            if name is None:
                raise SweepError(
                    f"{where}: an inline {axis} in a list needs a name; write it as "
                    f"a mapping `{axis}: {{my_name: {{...}}}}`"
                )
        out.append((_check_name(name, axis, source), payload))
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SweepError(f"{where}: duplicate names {dup}; give each entry its own name")
    if not out:
        raise SweepError(f"{where}: empty axis; list at least one entry or drop the axis")
    return out


def _values(axis: str, spec: Any, source: Path) -> list:
    values = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not values:
        raise SweepError(f"{source}: axes.{axis} is empty; list at least one value")
    if axis in ("max_epochs", "seed"):
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SweepError(f"{source}: axes.{axis} values must be non-negative integers, got {v!r}")
    return values


def _check_axis_key(key: str, cfg: Mapping, source: Path) -> None:
    """An axis other than the named ones sets a config key: its first part must exist."""
    top = key.split(".")[0]
    if top not in cfg:
        known = sorted(set(SPECIAL_AXES) | {k for k in cfg if not k.startswith("_")})
        raise SweepError(
            f"{source}: axes.{key}: {top!r} is neither an axis "
            f"({', '.join(SPECIAL_AXES)}) nor a key of the run's config{did_you_mean(top, known)} "
            "Other axes are dotted config keys such as optim_wrapper.optimizer.lr."
        )


def _apply_epochs(cfg: dict, epochs: int) -> dict:
    """Set ``train_cfg.max_epochs``; epoch-based schedulers whose ``T_max``/``end`` equalled the
    old budget follow it (a cosine schedule over 200 epochs becomes one over ``epochs``)."""
    old = get_path(cfg, "train_cfg.max_epochs")
    cfg = merge(cfg, {"train_cfg": {"max_epochs": epochs}})
    scheds = cfg.get("param_scheduler")
    if old is not None and scheds is not None:
        scheds = scheds if isinstance(scheds, list) else [scheds]
        new = []
        for s in scheds:
            s = dict(s)
            if s.get("by_epoch", True):
                for key in ("T_max", "end"):
                    if s.get(key) == old:
                        s[key] = epochs
            new.append(s)
        cfg["param_scheduler"] = new
    return cfg


def _matches(axes: Mapping, cond: Mapping, source: Path, what: str) -> bool:
    for key, want in cond.items():
        key = "epochs" if key == "max_epochs" else key
        if key not in axes:
            raise SweepError(
                f"{source}: {what} names {key!r}, which is not an axis of this sweep "
                f"(axes: {', '.join(sorted(axes))})"
            )
        wants = want if isinstance(want, list) else [want]
        if axes[key] not in wants:
            return False
    return True


def _resources(res_spec: Mapping, axes: Mapping, source: Path) -> Resources:
    values = dict(DEFAULT_RESOURCES)
    entries = [res_spec] + list(res_spec.get("per_cell", []) or [])
    for i, entry in enumerate(entries):
        if i and not _matches(
            axes, entry.get("match", {}) or {}, source, f"resources.per_cell[{i - 1}].match"
        ):
            continue
        for key, value in entry.items():
            if key in ("per_cell", "match"):
                continue
            if key not in RESOURCE_KEYS:
                raise SweepError(f"{source}: unknown resource {key!r}; known: {', '.join(RESOURCE_KEYS)}")
            values[key] = RESOURCE_KEYS[key](value)
    return Resources(**values)


def _leaderboard(spec: Any, source: Path) -> dict:
    """The sweep's ``leaderboard:`` section, checked: ``metric`` and ``last_n``."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - {"metric", "last_n"})
    if unknown:
        raise SweepError(f"{source}: unknown leaderboard keys {unknown}; known: last_n, metric")
    metric = spec.get("metric", "median_last_n")
    if metric not in TABLE_METRICS:
        raise SweepError(
            f"{source}: leaderboard.metric must be one of {', '.join(TABLE_METRICS)}, got {metric!r}"
        )
    last_n = spec.get("last_n", DEFAULT_LAST_N)
    if isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1:
        raise SweepError(
            f"{source}: leaderboard.last_n must be a positive integer (the N of the "
            f"median of the last N evaluations), got {last_n!r}"
        )
    return {"metric": metric, "last_n": last_n}


def load_sweep(path: str | Path, work_root: str | Path | None = None) -> Sweep:
    """Read a sweep file and expand it into its runs (deterministic order and names)."""
    source = Path(path)
    spec = _read_yaml(source)
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        raise SweepError(f"{source}: unknown top-level keys {unknown}; known: {', '.join(sorted(TOP_KEYS))}")
    sweep_dir = source.parent
    name = _check_name(spec.get("name") or source.stem, "sweep", source)
    root = Path(work_root if work_root is not None else spec.get("work_root", "work_dirs")) / name

    base: dict = {}
    bases = spec.get("base") or []
    for b in [bases] if isinstance(bases, (str, Mapping)) else bases:
        base = merge(base, _load_fragment(b, sweep_dir, f"{source}: base"))
    axes_spec = dict(spec.get("axes") or {})
    if "mixer" in axes_spec:
        raise SweepError(
            f"{source}: axes.mixer is now axes.method: a method carries its mixer, "
            "loss, classifier, parameter groups and hooks (configs/methods/*.yaml), "
            "e.g. `method: {CutMix: ../methods/cutmix.yaml}`"
        )
    named = {
        a: (_named_axis(a, axes_spec.pop(a), sweep_dir, source) if a in axes_spec else [(None, None)])
        for a in NAMED_AXES
    }
    epochs = (
        _values("max_epochs", axes_spec.pop("max_epochs"), source) if "max_epochs" in axes_spec else [None]
    )
    seeds = _values("seed", axes_spec.pop("seed"), source) if "seed" in axes_spec else [None]
    extra = [(k, _values(k, v, source)) for k, v in axes_spec.items()]
    options = options_to_dict(spec.get("options") or {})
    excludes = spec.get("exclude") or []
    res_spec = spec.get("resources") or {}
    leaderboard = _leaderboard(spec.get("leaderboard"), source)

    runs, seen = [], {}
    for (ds, ds_cfg), (bb, bb_cfg), (mx, mx_cfg), ep, *rest in itertools.product(
        *named.values(), epochs, *[v for _, v in extra], seeds
    ):
        extra_vals, seed = rest[:-1], rest[-1]
        cfg = copy.deepcopy(base)
        for frag in (bb_cfg, ds_cfg):
            if frag is not None:
                cfg = merge(cfg, frag)
        if mx_cfg is not None:
            cfg = merge_config(cfg, {METHOD_KEY: mx_cfg})
        if ep is not None:
            cfg = _apply_epochs(cfg, ep)
        if seed is not None:
            cfg = merge(cfg, {"randomness": {"seed": seed}})
        for (key, _), value in zip(extra, extra_vals):
            _check_axis_key(key, cfg, source)
            cfg = merge(cfg, options_to_dict({key: value}))
        cfg = merge(cfg, options)
        dataset = ds or get_path(cfg, "meta.dataset") or "dataset"
        backbone = bb or get_path(cfg, "meta.backbone") or "backbone"
        method = mx or get_path(cfg, "meta.method") or method_section(cfg)["name"]
        epochs_v = get_path(cfg, "train_cfg.max_epochs")
        seed_v = get_path(cfg, "randomness.seed", 0)
        if epochs_v is None:
            raise SweepError(
                f"{source}: run {dataset}/{backbone}/{method} has no train_cfg.max_epochs; "
                "set it in a base config or add a max_epochs axis"
            )
        axes = {
            "dataset": dataset,
            "backbone": backbone,
            "method": method,
            "epochs": epochs_v,
            "seed": seed_v,
            **{k: v for (k, _), v in zip(extra, extra_vals)},
        }
        if any(_matches(axes, ex, source, f"exclude[{i}]") for i, ex in enumerate(excludes)):
            continue
        leaf = "_".join(
            [method]
            + [f"{k.split('.')[-1]}{_fmt_value(v)}" for (k, _), v in zip(extra, extra_vals)]
            + [f"e{epochs_v}", f"s{seed_v}"]
        )
        run_name = f"{dataset}/{backbone}/{leaf}"
        if run_name in seen:
            raise SweepError(
                f"{source}: two runs would share the name {run_name}; give the axis values distinct names"
            )
        seen[run_name] = True
        cfg = merge(
            cfg,
            {
                "meta": {
                    "name": f"{name}/{run_name}",
                    "method": method,
                    "dataset": dataset,
                    "backbone": backbone,
                    "sweep": name,
                }
            },
        )
        runs.append(
            SweepRun(
                name=run_name,
                work_dir=root / run_name,
                axes=axes,
                config=cfg,
                resources=_resources(res_spec, axes, source),
            )
        )
    if not runs:
        raise SweepError(f"{source}: the sweep expands to no runs (everything excluded?)")
    return Sweep(name=name, source=source, work_root=root, runs=runs, leaderboard=leaderboard)
