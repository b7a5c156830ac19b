"""The leaderboard tests' data: hand-made result.json files (the schema mixbench/results.py documents)
and where the test PostgreSQL server is."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mixbench.results import SCHEMA_VERSION, atomic_write_json, summarize_history

BASE_TIME = datetime(2026, 11, 22, 3, 0, 0, tzinfo=timezone.utc)
PG_ENV_VAR = "MIXBENCH_TEST_PG_URL"
PG_DEFAULT_URL = "postgresql://mixbench:mixbench@127.0.0.1:5432/postgres"


def make_result(
    root: Path,
    method: str,
    seed: int,
    top1: list[float],
    *,
    dataset: str = "cifar100",
    backbone: str = "resnet18_cifar",
    epochs: int | None = None,
    status: str = "finished",
    name: str | None = None,
    config_hash: str | None = None,
    s_per_iter: float = 0.01,
    peak_mem_mb: float = 1000.0,
    wall_s: float = 3600.0,
    device: str = "NVIDIA H100",
    num_devices: int = 1,
    minutes: int = 0,
    tags: dict | None = None,
    n: int = 10,
    method_settings: dict | None = None,
    backbone_settings: dict | None = None,
    eval_epochs: list[int] | None = None,
    heads: list[dict] | None = None,
    schema: int = SCHEMA_VERSION,
) -> Path:
    """Write ``root/<name>/result.json`` with one validation per entry of ``top1``, at the
    last ``len(top1)`` epochs of the run (or at ``eval_epochs``), and return its path.
    ``minutes`` shifts the ``updated`` time (a later re-run). Settings default to
    :data:`SETTINGS` of the method and :data:`RESNET18_CIFAR`; ``heads`` gives each
    evaluation's extra heads; ``schema=1`` writes a file of the first schema (no settings)."""
    epochs = epochs if epochs is not None else len(top1)
    name = name or f"{dataset}_{backbone}_{method.lower()}_e{epochs}_s{seed}"
    at = eval_epochs or [max(1, epochs - len(top1) + 1) + i for i in range(len(top1))]
    history = [
        {
            "epoch": e,
            "top1": v,
            "top5": min(100.0, v + 10),
            "train_loss": 1.0,
            "lr": 0.1,
            "wall_s": 10.0 * (i + 1),
        }
        for i, (e, v) in enumerate(zip(at, top1))
    ]
    for entry, h in zip(history, heads or []):
        entry["heads"] = h
    data = {
        "schema": SCHEMA_VERSION,
        "status": status,
        "updated": (BASE_TIME + timedelta(minutes=minutes)).isoformat(),
        "run": {
            "name": name,
            "method": method,
            "dataset": dataset,
            "backbone": backbone,
            "epochs": epochs,
            "seed": seed,
            "config": "config.yaml",
            "config_hash": config_hash or f"sha256:{name}",
            "work_dir": str(root / name),
            "tags": tags or {},
        },
        "metrics": summarize_history(history, n),
        "history": history,
        "cost": {
            "wall_s": wall_s,
            "train_img_per_s": 1000.0,
            "s_per_iter": s_per_iter,
            "peak_mem_mb": peak_mem_mb,
            "device": device,
            "num_devices": num_devices,
            "iters": 100 * len(top1),
        },
        "env": {
            "mixbench": "0.1.0",
            "torch": "2.14.1",
            "cuda": "13.0",
            "git": "abc1234",
            "python": "3.11.7",
            "hostname": "test",
        },
    }
    if schema >= 2:
        data["run"]["method_settings"] = (
            method_settings if method_settings is not None else settings_of(method)
        )
        data["run"]["backbone_settings"] = (
            backbone_settings if backbone_settings is not None else RESNET18_CIFAR
        )
    data["schema"] = schema
    if status == "failed":
        data["error"] = {"type": "RuntimeError", "message": "CUDA out of memory"}
    path = root / name / "result.json"
    atomic_write_json(path, data)
    return path


# OpenMixup's CIFAR ResNet-18 (its zero-initialised residual BN, docs/protocol.md)
RESNET18_CIFAR = {
    "type": "ResNetCIFAR",
    "depth": 18,
    "width": 64,
    "in_channels": 3,
    "zero_init_residual": True,
}


def plain_method(mixer: dict) -> dict:
    """method_settings of a MixupClassifier run with ``mixer`` and the default loss."""
    return {
        "classifier": {"type": "MixupClassifier"},
        "mixer": mixer,
        "loss": {"type": "MixedCrossEntropy"},
        "paramwise_cfg": {},
        "hooks": [],
    }


def reproduction_settings(name: str) -> dict:
    """method_settings of configs/methods/openmixup/<name>.yaml on the CIFAR ResNet-18 recipe:
    OpenMixup's settings of that method, as our reproduction configs write them."""
    from mbtest.repo import REPO
    from mixbench.config import load_config
    from mixbench.fingerprint import method_settings

    recipe = load_config(REPO / "configs/_base_/models/resnet18_cifar.yaml")["model"]
    method = load_config(REPO / "configs/methods/openmixup" / f"{name}.yaml")["method"]
    return method_settings({"model": recipe, "method": method})


SETTINGS = {
    "Vanilla": reproduction_settings("vanilla"),
    "Mixup": reproduction_settings("mixup"),
    "CutMix": reproduction_settings("cutmix"),
    "PuzzleMix": reproduction_settings("puzzlemix"),
}


def settings_of(method: str) -> dict:
    return SETTINGS.get(method) or plain_method({"type": method})


def make_analysis(result_path: Path, kind: str, summary: dict, *, minutes: int = 20, **settings) -> Path:
    """Write ``<run dir>/analysis/<kind>.json`` as tools/analysis/*.py do (``analysis``,
    ``updated``, ``summary`` and scalar settings) and return its path."""
    data = {
        "analysis": kind,
        "updated": (BASE_TIME + timedelta(minutes=minutes)).isoformat(),
        "summary": summary,
        **settings,
    }
    path = Path(result_path).parent / "analysis" / f"{kind}.json"
    atomic_write_json(path, data)
    return path


def pg_admin_url() -> str:
    return os.environ.get(PG_ENV_VAR, PG_DEFAULT_URL)


def history_for(value: float) -> list[float]:
    """12 evaluations whose last 10 have median ``value``, best ``value + 1`` and last
    ``value - 1``: [5, 6, v, v, v+1 x4, v-1 x4] (sorted last 10: v-1 x4, v, v, v+1 x4)."""
    return [5.0, 6.0, value, value] + [value + 1] * 4 + [value - 1] * 4


# The hand-made benchmark the aggregation tests check (values = median of last 10):
#   cifar100/resnet18_cifar/200e: Vanilla 76.0 76.5 77.0 | Mixup 78.0 78.4 79.1 |
#                                 CutMix 76.6 76.4 76.8 | PuzzleMix 80.0 (one seed)
#   cifar100/resnet18_cifar/400e: Vanilla 77.0 | Mixup 79.0 (one seed each)
#   cifar10/resnet18_cifar/200e:  Vanilla 90.0 | Mixup 91.0 | CutMix 91.0 (a tie)
REFERENCE_VALUES = {
    ("cifar100", 200, "Vanilla"): [76.0, 76.5, 77.0],
    ("cifar100", 200, "Mixup"): [78.0, 78.4, 79.1],
    ("cifar100", 200, "CutMix"): [76.6, 76.4, 76.8],
    ("cifar100", 200, "PuzzleMix"): [80.0],
    ("cifar100", 400, "Vanilla"): [77.0],
    ("cifar100", 400, "Mixup"): [79.0],
    ("cifar10", 200, "Vanilla"): [90.0],
    ("cifar10", 200, "Mixup"): [91.0],
    ("cifar10", 200, "CutMix"): [91.0],
}
S_PER_ITER = {"Vanilla": 0.010, "Mixup": 0.011, "CutMix": 0.012, "PuzzleMix": 0.025}


def write_reference_runs(root: Path) -> list[Path]:
    """The benchmark above plus: an older duplicate of Mixup seed 0 (cifar100, 200e) that
    must be dropped, a running and a failed run that must not be counted. cifar100 runs
    report 2 GPUs for 7200 s (4 GPU-hours); cifar10 runs ran on the CPU for 1800 s."""
    paths = []
    for (dataset, epochs, method), values in REFERENCE_VALUES.items():
        cpu = dataset == "cifar10"
        for seed, value in enumerate(values):
            paths.append(
                make_result(
                    root,
                    method,
                    seed,
                    history_for(value),
                    dataset=dataset,
                    epochs=epochs,
                    s_per_iter=S_PER_ITER[method],
                    peak_mem_mb=1000.0 + 100 * seed,
                    wall_s=1800.0 if cpu else 7200.0,
                    device="cpu" if cpu else "NVIDIA H100",
                    num_devices=1 if cpu else 2,
                    minutes=10,
                )
            )
    paths.append(
        make_result(
            root, "Mixup", 0, history_for(60.0), epochs=200, name="old_mixup_s0", s_per_iter=0.011, minutes=0
        )
    )
    paths.append(
        make_result(root, "Mixup", 1, [50.0, 55.0], epochs=200, name="still_running", status="running")
    )
    paths.append(make_result(root, "CutMix", 2, [40.0], epochs=200, name="crashed", status="failed"))
    return paths
