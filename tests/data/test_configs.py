"""Every config under configs/ loads, passes the runner's validation, and builds its model
and its train/val dataset classes (on the miniature fixtures)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

import mixbench.data  # noqa: F401
import mixbench.models  # noqa: F401
from mixbench.config import ConfigError, get_path, load_config
from mixbench.engine.runner import validate_config
from mixbench.method import resolve_method
from mixbench.registry import DATASETS, MODELS, build_mixer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Every non-base YAML under configs/: training configs (model + data), method files (only a
# `method:` section, combined with a benchmark config) and other tools' specs (e.g. sweeps).
ALL = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if "_base_" not in p.parts)
KIND = {
    p: (
        "train"
        if "train_dataloader" in (c := load_config(p))
        else "method"
        if set(c) - {"_source_"} == {"method"}
        else "other"
    )
    for p in ALL
}
CONFIGS = [p for p in ALL if KIND[p] == "train"]
METHOD_FILES = [p for p in ALL if KIND[p] == "method"]
BASES = sorted((CONFIG_DIR / "_base_").rglob("*.yaml"))


def innermost(ds_cfg: dict) -> dict:
    while "dataset" in ds_cfg:
        ds_cfg = ds_cfg["dataset"]
    return ds_cfg


def test_every_config_loads():
    assert all(isinstance(load_config(p), dict) for p in ALL)


def test_there_are_benchmark_configs():
    names = {str(p.relative_to(CONFIG_DIR)) for p in CONFIGS}
    for expected in (
        "benchmarks/cifar100/resnet18_cifar_e800.yaml",
        "benchmarks/cifar10/resnext50_cifar_e1200.yaml",
        "benchmarks/cifar100/wrn28_8_e400.yaml",
        "benchmarks/cifar100/deit_small_e600.yaml",
        "benchmarks/tiny_imagenet/resnet18_e400.yaml",
        "benchmarks/imagenet1k/resnet50_e300.yaml",
        "benchmarks/aircraft/resnext50_e200.yaml",
        "benchmarks/places205/resnet50_e100.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", BASES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_base_loads(path):
    assert isinstance(load_config(path), dict)


def test_every_method_file_is_only_a_method():
    """configs/methods/ holds methods only: no backbone, dataset or schedule in them."""
    files = sorted((CONFIG_DIR / "methods").rglob("*.yaml"))
    assert len(files) >= 22 and set(files) <= set(METHOD_FILES)


@pytest.mark.parametrize("path", METHOD_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_method_file_validates_on_a_benchmark_config(path):
    method = load_config(path)["method"]
    cfg = load_config(CONFIG_DIR / "benchmarks/cifar100/resnet18_cifar_e200.yaml", {"method": method})
    checkpoint = get_path(method, "mixer.extractor.checkpoint")
    if checkpoint is not None and not Path(checkpoint).is_file():  # a local pretrained network
        with pytest.raises(ConfigError, match=f"checkpoint '{checkpoint}' does not exist"):
            validate_config(cfg)
        return
    validate_config(cfg)
    mixer = method.get("mixer")
    if mixer is not None:
        assert type(build_mixer(mixer)).__name__ == mixer["type"]


_built_models: dict = {}


def build_model(model_cfg: dict):
    """The config's model, built once per distinct model config."""
    key = repr(model_cfg)
    if key not in _built_models:
        _built_models[key] = MODELS.build(model_cfg).eval()
    return _built_models[key]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_builds_model_and_datasets(path, fixture_roots):
    """Load + validate the config, build its train/val datasets on the fixtures, and run the
    model on a val item (through its data preprocessor) to get one logit per class."""
    cfg = load_config(path)
    validate_config(cfg)
    assert cfg["meta"]["dataset"] and cfg["meta"]["backbone"]
    model_cfg = resolve_method(cfg)["model"]
    model_cfg["backbone"].pop("pretrained", None)  # local weights file, absent in CI
    teacher = model_cfg.get("teacher")
    if isinstance(teacher, dict) and not Path(teacher["checkpoint"]).is_file():  # TokenMix's
        with pytest.raises(FileNotFoundError, match=re.escape(f"{teacher['checkpoint']!r} does not exist")):
            MODELS.build(model_cfg)
        model_cfg["teacher"] = None  # the model's own score maps
    model = build_model(model_cfg)
    num_classes = cfg["model"]["head"]["num_classes"]
    assert model.head.num_classes == num_classes
    for loader in ("train_dataloader", "val_dataloader"):
        ds_cfg = copy.deepcopy(cfg[loader]["dataset"])
        inner = innermost(ds_cfg)
        if inner["type"] in fixture_roots:
            inner["root"] = str(fixture_roots[inner["type"]])
        inner.pop("in_memory", None)
        ds = DATASETS.build(ds_cfg)
        item = ds[0]
        assert item["inputs"].dtype == torch.uint8 and item["inputs"].dim() == 3
        if "pipeline" in ds_cfg and any(
            s["type"] in ("RandomResizedCrop", "CenterCrop") for s in ds_cfg["pipeline"]
        ):
            assert item["inputs"].shape[-1] == item["inputs"].shape[-2]
    batch = {"inputs": item["inputs"][None], "data_samples": item["data_samples"].reshape(1)}
    with torch.no_grad():
        inputs = model.data_preprocessor(batch, False)["inputs"]
        assert model.logits(inputs).shape == (1, num_classes)


def train_steps(path: str) -> list:
    """The per-sample train pipeline and the batched augments of a benchmark config."""
    cfg = load_config(CONFIG_DIR / path)
    pre = cfg["model"]["data_preprocessor"]
    return (
        cfg["train_dataloader"]["dataset"].get("pipeline", []),
        pre.get("batch_augments", []),
        pre.get("normalized_batch_augments", []),
    )


def test_published_augmentation_recipes():
    """OpenMixup's CIFAR-100 bases pad the crop by reflection (its CIFAR-10 base with zeros);
    its CIFAR-100 ViT/ConvNeXt bases use 'rand-m7-mstd0.5' over FixMatch's op list and no
    erasing; DeiT on ImageNet uses timm's 'rand-m9-mstd0.5-inc1' and pixel erasing 0.25."""
    for path in (
        "cifar100/resnet18_cifar_e800.yaml",
        "cifar100/resnext50_cifar_e200.yaml",
        "cifar100/wrn28_8_e400.yaml",
    ):
        _, batch, _ = train_steps(f"benchmarks/{path}")
        assert batch[0] == {"type": "RandomCropPad", "padding": 4, "padding_mode": "reflect"}
    _, batch, _ = train_steps("benchmarks/cifar10/resnet18_cifar_e200.yaml")
    assert batch[0]["type"] == "RandomCropPad" and batch[0].get("padding_mode", "constant") == "constant"
    for path in ("deit_small_e200", "swin_tiny_e600", "convnext_tiny_e200"):
        pipeline, batch, post = train_steps(f"benchmarks/cifar100/{path}.yaml")
        ra = [s for s in pipeline if "RandAugment" in s["type"]]
        assert ra == [
            {
                "type": "FixMatchRandAugment",
                "num_ops": 2,
                "magnitude": 7,
                "magnitude_std": 0.5,
                "total_level": 10,
                "fill": [114, 123, 125],
                "interpolation": "bicubic",
            }
        ]
        assert not batch and not post and not any("Erasing" in s["type"] for s in pipeline)
    pipeline, batch, post = train_steps("benchmarks/imagenet1k/deit_small_e300.yaml")
    assert [s["type"] for s in pipeline] == ["RandomResizedCrop", "TimmRandAugment"]
    assert pipeline[1]["config"] == "rand-m9-mstd0.5-inc1" and pipeline[0]["interpolation"] == "bicubic"
    assert post == [{"type": "BatchRandomErasing", "prob": 0.25, "mode": "pixel"}]


def test_convnext_cifar_backbone_is_openmixups():
    """ConvNeXt_CIFAR: 3x3 stride-1 stem, stages at 32/16/8/4 px, GAP then the final norm."""
    cfg = load_config(CONFIG_DIR / "benchmarks/cifar100/convnext_tiny_e200.yaml")
    backbone = MODELS.build(cfg["model"]["backbone"]).eval()
    stem = backbone.model.stem[0]
    assert (stem.kernel_size, stem.stride, stem.padding) == ((3, 3), (1, 1), (1, 1))
    assert type(backbone.model.stem[1]).__name__ == "LayerNorm2d"
    assert backbone.model.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.3)
    sizes = []
    for stage in backbone.model.stages:
        stage.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    maps = []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = backbone(x, lambda i, t: maps.append(t) or t)
    assert sizes == [32, 16, 8, 4] and maps[1].shape == (2, 768, 4, 4)
    pooled = maps[1].mean((2, 3))
    expected = torch.nn.functional.layer_norm(
        pooled, (768,), backbone.model.head.norm.weight, backbone.model.head.norm.bias, eps=1e-6
    )
    assert out.shape == (2, 768) and torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="sets its own stem"):
        MODELS.build({"type": "ConvNeXtCIFAR", "patch_size": 2})
