"""Fixtures of the analysis tests: one tiny trained digits run shared by the whole session."""

import pytest
from mbtest.repo import REPO, run_tool

CONFIG = REPO / "configs/digits/resnet8_mixup.yaml"


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """Work dir of a 3-epoch Vanilla ResNet-8 on digits (result.json, config.yaml,
    epoch_3.pth), trained once through tools/train.py."""
    wd = tmp_path_factory.mktemp("analysis") / "run"
    run_tool(
        "tools/train.py",
        CONFIG,
        "--work-dir",
        wd,
        "--cfg-options",
        "train_cfg.max_epochs=3",
        "method={mixer: {type: Vanilla}}",
    )
    return wd


@pytest.fixture(scope="session")
def trained(trained_dir):
    """The run loaded for analysis: first 200 validation images, on the CPU."""
    from mixbench.analysis.common import load_run

    return load_run(trained_dir / "config.yaml", trained_dir / "epoch_3.pth", max_samples=200, device="cpu")
