"""Every bad-config error names the key and the config file, before any training."""

import pytest
from mbtest.repo import REPO, run_tool

from mixbench.config import ConfigError, load_config
from mixbench.engine.runner import validate_config

DEMO = REPO / "configs/digits/resnet8_mixup.yaml"


def check(overrides, pattern):
    cfg = load_config(DEMO, overrides)
    with pytest.raises(ConfigError, match=pattern) as info:
        validate_config(cfg)
    assert "resnet8_mixup.yaml" in str(info.value)
    return str(info.value)


def test_demo_config_is_valid():
    validate_config(load_config(DEMO))


def test_unknown_mixer_suggests_closest():
    msg = check(["method.mixer={type: Mixpu}"], "Unknown mixer 'Mixpu'")
    assert "did you mean 'Mixup'" in msg and "Registered" in msg


def test_unknown_backbone_and_dataset():
    assert "ResNetCIFAR" in check(["model.backbone.type=ResNetCIFR"], "Unknown model 'ResNetCIFR'")
    assert "Digits" in check(["train_dataloader.dataset.type=Digit"], "Unknown dataset 'Digit'")


def test_unknown_batch_augment_in_either_preprocessor_list():
    for key in ("batch_augments", "normalized_batch_augments"):
        msg = check(
            [f"model.data_preprocessor.{key}=[{{type: BatchRandomErasin}}]"],
            rf"Unknown batch augment 'BatchRandomErasin' \(at model.data_preprocessor.{key}\[0\].type",
        )
        assert "did you mean 'BatchRandomErasing'" in msg


def test_a_per_sample_transform_among_the_batch_augments_says_where_it_belongs():
    for key in ("batch_augments", "normalized_batch_augments"):
        msg = check(
            [f"model.data_preprocessor.{key}=[{{type: RandomHorizontalFlip}}]"],
            r"^RandomHorizontalFlip is a per-sample transform: put it in the dataset pipeline "
            r"\(train_dataloader.dataset.pipeline\), not among the batch augments "
            rf"\(at model.data_preprocessor.{key}\[0\].type",
        )
        assert "Unknown" not in msg


def with_pipeline(loader: str, steps: str) -> list[str]:
    """The demo's digits wrapped in a TransformedDataset with these pipeline steps."""
    split = "train" if loader == "train_dataloader" else "test"
    return [
        f"{loader}.dataset={{type: TransformedDataset, dataset: {{type: Digits, split: {split}}}, "
        f"pipeline: {steps}}}"
    ]


def test_a_batch_augment_in_the_dataset_pipeline_says_where_it_belongs():
    for loader in ("train_dataloader", "val_dataloader"):
        msg = check(
            with_pipeline(loader, "[{type: RandomCropPad, padding: 2}]"),
            r"^RandomCropPad is a batch augment: put it under model.data_preprocessor.batch_augments "
            rf".*, not in the dataset pipeline \(at {loader}.dataset.pipeline\[0\].type",
        )
        assert "Unknown" not in msg


def test_pipeline_steps_are_checked_before_training():
    validate_config(load_config(DEMO, with_pipeline("train_dataloader", "[{type: RandomCrop, size: 16}]")))
    check(
        with_pipeline("train_dataloader", "[{type: RandomResizeCrop, size: 16}]"),
        r"did you mean 'RandomResizedCrop'",
    )
    check(
        with_pipeline("val_dataloader", "[{type: CenterCrop, sise: 8}]"),
        r"val_dataloader.dataset.pipeline\[0\].*CenterCrop has no option 'sise'; did you mean 'size'",
    )


def test_impossible_values():
    check(["method.mixer.alpha=-1"], r"method.mixer \(Mixup\): alpha must be .*>= 0.*got -1")
    check(["train_cfg.max_epochs=0"], r"train_cfg.max_epochs must be > 0")
    check(["train_dataloader.batch_size=-4"], r"train_dataloader.batch_size must be > 0")


def test_wrong_value_types():
    check(["train_cfg.max_epochs=ten"], r"train_cfg.max_epochs must be an integer, got 'ten'")
    check(["val_dataloader.batch_size=1.5"], r"val_dataloader.batch_size must be an integer")


def test_missing_required_section(tmp_path):
    cfg = load_config(DEMO)
    del cfg["optim_wrapper"]
    with pytest.raises(ConfigError, match="missing required section 'optim_wrapper'"):
        validate_config(cfg)


def test_train_cli_reports_config_error(tmp_path):
    proc = run_tool(
        "tools/train.py",
        DEMO,
        "--work-dir",
        tmp_path / "wd",
        "--cfg-options",
        "method.mixer.type=CutMx",
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "config error" in proc.stderr and "Unknown mixer 'CutMx'" in proc.stderr
    assert not (tmp_path / "wd" / "result.json").exists()
