"""One epoch of tools/train.py on every miniature dataset, through its benchmark config
(the real pipelines), with a tiny backbone and small batches set by --cfg-options."""

import json

import pytest
from mbtest.repo import REPO, load_script

from mixbench.config import load_config

train_tool = load_script("tools/train.py")

CONFIGS = {  # dataset class -> a benchmark config that trains on it
    "CIFAR10": "cifar10/resnet18_cifar_e200.yaml",
    "CIFAR100": "cifar100/deit_small_e200.yaml",  # 224-px TransformedDataset + RandAugment
    "TinyImageNet": "tiny_imagenet/resnet18_e400.yaml",
    "ImageNet": "imagenet1k/deit_small_e300.yaml",
    "ImageNet100": "imagenet100/resnet50_e100.yaml",
    "CUB200": "cub200/resnet18_e200.yaml",
    "FGVCAircraft": "aircraft/resnext50_e200.yaml",
    "StanfordCars": "stanford_cars/resnet18_e200.yaml",
    "INaturalist2017": "inat2017/resnet50_e100.yaml",
    "INaturalist2018": "inat2018/resnext101_e100.yaml",
    "Places205": "places205/resnet50_e100.yaml",
}
LOADER = ["batch_size=4", "num_workers=0", "persistent_workers=false", "pin_memory=false"]


def dataset_key(ds_cfg: dict, prefix: str) -> str:
    while "dataset" in ds_cfg:
        ds_cfg, prefix = ds_cfg["dataset"], prefix + ".dataset"
    return prefix


@pytest.mark.parametrize("dataset", sorted(CONFIGS))
def test_one_epoch(dataset, fixture_roots, tmp_path):
    config = REPO / "configs" / "benchmarks" / CONFIGS[dataset]
    cfg = load_config(config)
    options = [
        "model.backbone={type: ResNetCIFAR, depth: 8, width: 8}",
        "train_cfg.max_epochs=1",
        "default_hooks.logger.interval=1",
        "default_hooks.checkpoint=null",
    ]
    for loader in ("train_dataloader", "val_dataloader"):
        options += [f"{loader}.{o}" for o in LOADER]
        key = dataset_key(cfg[loader]["dataset"], f"{loader}.dataset")
        assert cfg[loader]["dataset"].get("type") == dataset or "dataset" in cfg[loader]["dataset"]
        options += [f"{key}.root={fixture_roots[dataset]}", f"{key}.max_samples=8"]
    work_dir = tmp_path / "run"
    assert train_tool.main([str(config), "--work-dir", str(work_dir), "--cfg-options", *options]) == 0
    result = json.loads((work_dir / "result.json").read_text())
    assert result["status"] == "finished"
    assert result["run"]["dataset"] == cfg["meta"]["dataset"]
    assert [h["epoch"] for h in result["history"]] == [1]
    assert 0 <= result["history"][0]["top1"] <= 100
