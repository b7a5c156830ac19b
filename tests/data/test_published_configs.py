"""configs/published/: every issue-18 method in the setting its paper reports. The values
each config's comment claims are written once here, with their source, so that a base file
or a method file that drifts is caught; the backbone is built and its size compared with the
published parameter count of that network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mbtest.repo import load_script

import mixbench.data  # noqa: F401
import mixbench.models  # noqa: F401
from mixbench.config import load_config
from mixbench.engine.runner import validate_config
from mixbench.registry import MODELS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
PUBLISHED = sorted((CONFIG_DIR / "published").glob("*.yaml"))
train_tool = load_script("tools/train.py")


def sgd(lr: float, weight_decay: float, nesterov: bool = False) -> dict:
    return {"type": "SGD", "lr": lr, "momentum": 0.9, "weight_decay": weight_decay, "nesterov": nesterov}


def steps(*milestones: int) -> list:
    return [{"type": "MultiStepLR", "milestones": list(milestones), "gamma": 0.1}]


# DeiT's recipe on ImageNet-1k (Touvron et al., ICML 2021): AdamW lr 5e-4 x 1024 / 512,
# wd 0.05, 5 warm-up epochs, cosine to 1e-5, 300 epochs, batch 8 x 128.
DEIT_ADAMW = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}
DEIT_300 = [
    {"type": "LinearLR", "end": 5},
    {"type": "CosineAnnealingLR", "begin": 5, "end": 300, "eta_min": 1e-5},
]
DEIT_S16 = {"type": "ViTBackbone", "model_name": "deit_small_patch16_224"}
# Published parameter counts (millions), less the classifier: WRN-28-10 36.5M with a 640 x 100
# head (Zagoruyko & Komodakis, BMVC 2016); WRN-40-2 2.24M with a 128 x 10 head (its widely
# cited CIFAR-10 size); ResNet-50 25.56M with its 2048 x 1000 ImageNet head (He et al., CVPR
# 2016); ResNet-18 / PreAct-ResNet-18 with a CIFAR stem 11.17M; DeiT-S 22.05M with a 384 x 1000
# head (Touvron et al., ICML 2021). The CIFAR ResNet-50's smaller stem is within 1% of it.
WRN28_10, WRN40_2, RESNET50, RESNET18_CIFAR, DEIT_S = (
    36.5 - 0.064,
    2.24 - 0.0013,
    25.56 - 2.05,
    11.17,
    22.05 - 0.385,
)


def row(
    method, dataset, num_classes, batch, epochs, backbone, features, optimizer, schedule, **extra
) -> dict:
    """One published setting; ``extra``: mparams, grid, clip, crop, head_lr_mult, head_init_std."""
    return dict(
        method=method, dataset=dataset, num_classes=num_classes, batch=batch, epochs=epochs,
        backbone=backbone, features=features, optimizer=optimizer, schedule=schedule, **extra,
    )  # fmt: skip


PREACT18 = {"type": "PreActResNetCIFAR", "depth": 18, "width": 64, "init": "pytorch"}
RESNET50_CIFAR = {"type": "ResNetCIFAR", "depth": 50, "width": 64, "init": "pytorch"}
SNAPMIX_R50 = {
    "type": "TimmBackbone",
    "model_name": "resnet50",
    "pretrained": "checkpoints/resnet50-19c8e357.pth",
}
MIXPRO_WARMUP = [
    {"type": "LinearLR", "start_factor": 1e-3, "end": 20},
    {"type": "CosineAnnealingLR", "begin": 20, "end": 300, "eta_min": 1e-5},
]
OPENMIXUP_VIT_200 = [{"type": "LinearLR", "end": 20}, {"type": "CosineAnnealingLR", "begin": 20, "end": 200}]


def cosine(t_max: int, eta_min: float) -> list:
    return [{"type": "CosineAnnealingLR", "T_max": t_max, "eta_min": eta_min, "convert_to_iter_based": True}]


# fmt: off
EXPECTED = {
    # github.com/3neutronstar/GuidedMixup README (Guided-AP, PreActResNet18, 1200 epochs); main.py
    "guidedmixup_cifar100_preactresnet18_e1200": row(
        "guidedmixup", "cifar100", 100, 100, 1200, PREACT18, 512, sgd(0.1, 1e-4), steps(400, 800),
        mparams=RESNET18_CIFAR),
    # github.com/Shaoli-Huang/SnapMix README + utils/conf.py + config/comm.yml + datasets/tfs.py
    "snapmix_cub200_resnet50_e200": row(
        "snapmix", "cub200", 200, 16, 200, SNAPMIX_R50, 2048, sgd(1e-3, 1e-4), steps(80, 150, 180),
        mparams=RESNET50, crop=448, head_lr_mult=10.0),
    # github.com/FrancescoPinto/RegMixup commands.sh (regmixup_wrn_c100) + experiment_setup.py
    "regmixup_cifar100_wrn28_10_e350": row(
        "regmixup", "cifar100", 100, 128, 350,
        {"type": "WideResNet", "depth": 28, "widen_factor": 10, "dropout": 0.1}, 640,
        sgd(0.1, 5e-4, nesterov=True), steps(150, 250), mparams=WRN28_10),
    # github.com/cvlab-yonsei/RankMixup train_cifar.sh + configs/{optim/sgd,data/cifar10,defaults}.yaml
    "rankmixup_cifar10_resnet50_e200": row(
        "rankmixup", "cifar10", 10, 128, 200, RESNET50_CIFAR, 2048, sgd(0.1, 5e-4), steps(80, 120),
        mparams=RESNET50, clip=2.0),
    # github.com/google-research/augmix cifar.py defaults
    "augmix_cifar10_wrn40_2_e100": row(
        "augmix", "cifar10", 10, 128, 100, {"type": "WideResNet", "depth": 40, "widen_factor": 2, "dropout": 0.0},
        128, sgd(0.1, 5e-4, nesterov=True), cosine(100, 1e-6), mparams=WRN40_2),
    # github.com/JinXins/SUMix configs/classification/cifar100/mixups/uncertain/r18_mixups_none.py
    "sumix_cifar100_resnet18_e800": row(
        "sumix", "cifar100", 100, 100, 800, {"type": "ResNetCIFAR", "depth": 18, "width": 64}, 512,
        sgd(0.1, 1e-4), cosine(800, 0.0), mparams=RESNET18_CIFAR),
    # github.com/Euphoria16/TL-Align main_tla.py (DeiT's recipe)
    "tlalign_imagenet1k_deit_small_e300": row(
        "tlalign", "imagenet1k", 1000, 128, 300, DEIT_S16, 384, DEIT_ADAMW, DEIT_300,
        mparams=DEIT_S, grid=(14, 14)),
    # github.com/fistyee/MixPro configs/deit/deit_small_patch14_mask56_224_alpha1.yaml + config.py
    "mixpro_imagenet1k_deit_small_p14_e300": row(
        "mixpro", "imagenet1k", 1000, 128, 300, {**DEIT_S16, "patch_size": 14}, 384, DEIT_ADAMW,
        MIXPRO_WARMUP, grid=(16, 16), clip=5.0),
    # OpenMixup configs/classification/cifar100/mixups/vits/deit_small/deit_s_mergemix_..._bs100_ep200.py
    "mergemix_cifar100_deit_small_e200": row(
        "mergemix", "cifar100", 100, 100, 200, DEIT_S16, 384, DEIT_ADAMW, OPENMIXUP_VIT_200,
        mparams=DEIT_S, grid=(14, 14)),
    # github.com/SITE5039/AdaMixUp GitHub.AdaMixup.AAAI.MNIST.Cifar.py (CIFAR branch)
    "adamixup_cifar10_preactresnet18_e1400": row(
        "adamixup", "cifar10", 10, 128, 1400, PREACT18, 512, sgd(0.1, 1e-4), steps(100, 150),
        mparams=RESNET18_CIFAR, head_init_std=1e-3),
}
# fmt: on
# MRL: the M-NDCG recipe with the other method file (train_cifar.sh LOSS_NAME=mrl)
EXPECTED["rankmixup_mrl_cifar10_resnet50_e200"] = {
    **EXPECTED["rankmixup_cifar10_resnet50_e200"],
    "method": "rankmixup_mrl",
}
# github.com/Sense-X/TokenMix main.py + exp/deit_small/run.sh: DeiT's recipe, as TL-Align's
EXPECTED["tokenmix_imagenet1k_deit_small_e300"] = {
    **EXPECTED["tlalign_imagenet1k_deit_small_e300"],
    "method": "tokenmix",
}


def test_every_published_config_has_a_row_and_every_issue18_method_a_config():
    assert sorted(p.stem for p in PUBLISHED) == sorted(EXPECTED)
    methods = {row["method"] for row in EXPECTED.values()}
    assert methods == {
        "guidedmixup", "snapmix", "regmixup", "rankmixup", "rankmixup_mrl", "augmix", "sumix",
        "tlalign", "mixpro", "mergemix", "tokenmix", "adamixup",
    }  # fmt: skip


def subset(actual: dict, expected: dict) -> dict:
    """The entries of ``actual`` at the keys of ``expected`` (an absent nesterov is False)."""
    return {k: actual.get(k, False if k == "nesterov" else None) for k in expected}


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.stem)
def test_published_config_holds_the_papers_setting(path):
    row = EXPECTED[path.stem]
    cfg = load_config(path)
    validate_config(cfg)
    method_file = load_config(CONFIG_DIR / "methods" / f"{row['method']}.yaml")["method"]
    assert cfg["method"] == method_file  # the method settings are the method file's, unchanged
    assert cfg["meta"]["dataset"] == row["dataset"]
    assert cfg["model"]["head"]["num_classes"] == row["num_classes"]
    assert cfg["model"]["head"].get("init_std") == row.get("head_init_std")
    assert subset(cfg["model"]["backbone"], row["backbone"]) == row["backbone"]
    assert cfg["train_cfg"]["max_epochs"] == row["epochs"]
    assert cfg["train_dataloader"]["batch_size"] == row["batch"]
    optimizer = cfg["optim_wrapper"]["optimizer"]
    assert subset(optimizer, row["optimizer"]) == row["optimizer"]
    schedulers = cfg["param_scheduler"]
    assert [subset(s, e) for s, e in zip(schedulers, row["schedule"])] == row["schedule"]
    assert len(schedulers) == len(row["schedule"])
    assert (cfg["optim_wrapper"].get("clip_grad") or {}).get("max_norm") == row.get("clip")
    custom = (cfg["optim_wrapper"].get("paramwise_cfg") or {}).get("custom_keys", {})
    assert custom.get("head", {}).get("lr_mult") == row.get("head_lr_mult")
    if "crop" in row:
        crops = [cfg[f"{s}_dataloader"]["dataset"]["pipeline"][-1] for s in ("train", "val")]
        assert [c["size"] for c in crops] == [row["crop"]] * 2


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.stem)
def test_published_backbone_is_the_papers_network(path):
    """The backbone built from the config has the published network's feature width, patch
    grid and parameter count (within 1%)."""
    row = EXPECTED[path.stem]
    backbone_cfg = dict(load_config(path)["model"]["backbone"])
    pretrained = backbone_cfg.pop("pretrained", None)
    if pretrained and not Path(pretrained).is_file():  # a local ImageNet checkpoint, absent in CI
        with pytest.raises(FileNotFoundError, match=re.escape(f"{pretrained} not found")):
            MODELS.build(load_config(path)["model"]["backbone"])
    backbone = MODELS.build(backbone_cfg)
    assert backbone.out_channels[-1] == row["features"]
    if "grid" in row:
        assert backbone.grid_size == row["grid"]
    if "mparams" in row:
        mparams = sum(p.numel() for p in backbone.parameters()) / 1e6
        assert mparams == pytest.approx(row["mparams"], rel=0.01)


def test_snapmix_trains_the_new_classifier_at_ten_times_the_backbone_lr():
    """SnapMix's config/comm.yml: lr 0.001 for the pretrained layers, 0.01 for the new fc."""
    from mmengine.optim import build_optim_wrapper

    from mixbench.method import resolve_method

    cfg = resolve_method(load_config(CONFIG_DIR / "published/snapmix_cub200_resnet50_e200.yaml"))
    cfg["model"]["backbone"].pop("pretrained")
    model = MODELS.build(cfg["model"])
    wrapper = build_optim_wrapper(model, cfg["optim_wrapper"])
    by_lr: dict = {}
    for group in wrapper.optimizer.param_groups:
        lr = round(group["lr"], 9)
        by_lr[lr] = by_lr.get(lr, 0) + sum(p.numel() for p in group["params"])
    head = sum(p.numel() for p in model.head.parameters())
    assert head == 2048 * 200 + 200
    assert by_lr == {
        1e-3: sum(p.numel() for p in model.parameters()) - head,
        1e-2: head,
    }


@pytest.mark.parametrize(
    "path",
    [p for p in PUBLISHED if EXPECTED[p.stem]["backbone"]["type"] != "ViTBackbone"],
    ids=lambda p: p.stem,
)
def test_published_cnn_config_trains_one_epoch(path, fixture_roots, tmp_path):
    """Each CNN setting runs as written (its method, optimizer, schedule, pipelines) for one
    epoch of tools/train.py on its miniature dataset, with a tiny backbone. (The ViT settings
    are the benchmark recipes that tests/data/test_train_on_fixtures.py trains.)"""
    cfg = load_config(path)
    options = [
        "model.backbone={type: ResNetCIFAR, depth: 8, width: 8}",
        "train_cfg.max_epochs=1",
        "default_hooks.checkpoint=null",
    ]
    for loader in ("train_dataloader", "val_dataloader"):
        root = fixture_roots[cfg[loader]["dataset"]["type"]]
        for option in ("batch_size=4", "num_workers=0", "persistent_workers=false", "pin_memory=false"):
            options.append(f"{loader}.{option}")
        options += [f"{loader}.dataset.root={root}", f"{loader}.dataset.max_samples=8"]
    work_dir = tmp_path / "run"
    assert train_tool.main([str(path), "--work-dir", str(work_dir), "--cfg-options", *options]) == 0
    result = json.loads((work_dir / "result.json").read_text())
    assert result["status"] == "finished" and result["run"]["method"] == cfg["method"]["name"]
    assert [h["epoch"] for h in result["history"]] == [1]
