"""The dataset facts live in one table (mixbench/data/catalog.py): the dataset classes, the
configs' heads and tools/prepare_data.py read it and agree with it."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import mixbench.data  # noqa: F401  (registers the datasets)
from mixbench.cli import prepare_data
from mixbench.config import ConfigError, load_config
from mixbench.data import CUB200, Digits, FashionMNIST, ImageFolder
from mixbench.data.catalog import CATALOG, check_num_classes, entry_of, innermost_dataset
from mixbench.data.io import DatasetError
from mixbench.engine.runner import validate_config
from mixbench.registry import DATASETS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DATASET_BASES = sorted((CONFIG_DIR / "_base_" / "datasets").glob("*.yaml"))


@pytest.mark.parametrize("path", DATASET_BASES, ids=lambda p: p.name)
def test_every_dataset_config_agrees_with_the_table(path):
    cfg = load_config(path)
    entry = CATALOG[cfg["meta"]["dataset"]]
    assert cfg["model"]["head"]["num_classes"] == entry.num_classes
    for loader in ("train_dataloader", "val_dataloader"):
        inner = innermost_dataset(cfg[loader]["dataset"])
        assert inner["type"] == entry.type
        assert inner["split"] in entry.splits
    check_num_classes(cfg)


def test_every_entry_names_its_registered_class():
    for entry in CATALOG.values():
        cls = DATASETS.get(entry.type)
        assert cls is not None and entry_of(cls) is entry
        assert entry.num_classes > 0 and all(n is None or n > 0 for n in entry.counts.values())
    assert entry_of(type("MyCUB", (CUB200,), {})) is CATALOG["cub200"]  # a subclass reads its base's
    assert entry_of(ImageFolder) is None


def test_a_head_of_the_wrong_width_is_a_config_error():
    cfg = load_config(
        CONFIG_DIR / "benchmarks/cifar100/resnet18_cifar_e200.yaml", ["model.head.num_classes=10"]
    )
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert str(info.value) == (
        f"{cfg['_source_']}: CIFAR-100 has 100 classes; model.head.num_classes is 10 "
        "(train_dataloader.dataset reads CIFAR100). Set model.head.num_classes: 100 "
        "(configs/_base_/datasets/cifar100.yaml sets it), or read a dataset with 10 classes"
    )


def test_the_check_reads_the_wrapped_dataset_and_its_class_options():
    # CIFAR-100 at 224 px: the dataset is wrapped in a TransformedDataset
    deit = CONFIG_DIR / "benchmarks/cifar100/deit_small_e200.yaml"
    with pytest.raises(ConfigError, match="CIFAR-100 has 100 classes; model.head.num_classes is 200"):
        validate_config(load_config(deit, ["model.head.num_classes=200"]))
    aircraft = CONFIG_DIR / "benchmarks/aircraft/resnext50_e200.yaml"
    family = [f"{loader}.dataset.level=family" for loader in ("train_dataloader", "val_dataloader")]
    with pytest.raises(ConfigError, match=r"FGVC-Aircraft \(level: family\) has 70 classes; .* is 100"):
        validate_config(load_config(aircraft, family))
    validate_config(load_config(aircraft, [*family, "model.head.num_classes=70"]))
    # a val set of another dataset is caught too
    with pytest.raises(ConfigError, match=r"CIFAR-10 has 10 classes.*val_dataloader.dataset reads CIFAR10"):
        validate_config(
            load_config(
                CONFIG_DIR / "benchmarks/cifar100/resnet18_cifar_e200.yaml",
                ["val_dataloader.dataset.type=CIFAR10"],
            )
        )
    # numbers the table cannot know are not checked: an ImageNet class list, a folder of images
    imagenet = load_config(
        CONFIG_DIR / "benchmarks/imagenet1k/resnet50_e100.yaml", ["model.head.num_classes=2"]
    )
    for loader in ("train_dataloader", "val_dataloader"):
        imagenet[loader]["dataset"]["class_list"] = ["n01440764", "n01443537"]
    check_num_classes(imagenet)
    check_num_classes(
        {
            "model": {"head": {"num_classes": 3}},
            "train_dataloader": {"dataset": {"type": "ImageFolder", "root": "x", "split": "train"}},
        }
    )


def test_readers_take_splits_and_counts_from_the_table(fixture_roots):
    with pytest.raises(ValueError, match="split must be one of 'train', 'test', got 'val'"):
        CUB200(fixture_roots["CUB200"], "val")
    cub = CUB200(fixture_roots["CUB200"], "train")
    cub.check_count(5_994, 200)  # the official numbers pass
    with pytest.raises(DatasetError, match="lists 3 classes, the official CUB-200-2011 has 200"):
        cub.check_count(5_994, 3)
    # scikit-learn's digits: the table's counts are the split the class documents
    entry = CATALOG["digits"]
    for split, n in entry.counts.items():
        ds = Digits(split=split)
        assert len(ds) == n and ds.num_classes == entry.num_classes


def test_fashion_mnist_images_have_the_tables_shape(fixture_roots, tmp_path):
    root = tmp_path / "fashion-mnist"
    shutil.copytree(fixture_roots["FashionMNIST"], root)
    assert FashionMNIST(root, "test").images.shape[1:] == CATALOG["fashion_mnist"].image_shape
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    images = np.zeros((3, 28, 27), dtype=np.uint8)  # one column short
    header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", *images.shape)
    (root / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes())
    with pytest.raises(DatasetError, match=r"expected N x 28 x 28 images and N labels, got \(3, 28, 27\)"):
        FashionMNIST(root, "test")


def test_prepare_data_checks_digits_without_a_root(capsys):
    assert prepare_data.main(["check", "digits"]) == 0
    out = capsys.readouterr().out
    assert "train     ok       1347 images (official 1347), 10 classes (official 10)" in out
    assert "test      ok       450 images (official 450)" in out
    with pytest.raises(SystemExit) as info:
        prepare_data.main(["check", "digits", "/data/digits"])
    assert info.value.code == 2 and "leave out ROOT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_data.main(["check", "cub200"])
    assert "give ROOT" in capsys.readouterr().err
