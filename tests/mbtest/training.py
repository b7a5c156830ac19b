"""Training runs through tools/train.py on digits (128 images, 2 iterations per epoch) with
the tiny ResNet-8 recipe: a method file trained, trained then resumed, checked to finish."""

from __future__ import annotations

import json
import math

import yaml

from mbtest.repo import REPO, method_of, run_tool


def train_on_digits(
    tmp_path,
    fragment: str,
    overrides: dict | None = None,
    epochs: int = 2,
    name: str = "work",
    extra_args=(),
    first_epoch: int = 1,
) -> dict:
    """Train the method ``configs/methods/<fragment>.yaml`` on the tiny ResNet-8 recipe
    (``overrides["model"]`` changes it, e.g. to a ViT) on 128 digits images for ``epochs``
    epochs with ``overrides`` merged on top (``overrides["method"]`` patches the method);
    check it finished with a finite loss; return result.json. A run resumed into a fresh work
    dir validates the checkpoint's epoch first, so its history starts at ``first_epoch`` = 1
    too unless told otherwise."""
    config = digits_config(tmp_path, fragment, overrides, epochs)
    return train_config(config, tmp_path / name, epochs, extra_args, first_epoch)


def digits_config(tmp_path, fragment: str, overrides: dict | None = None, epochs: int = 2):
    """Write ``tmp_path/digits_<fragment>.yaml``: digits (128 training images, 2 iterations
    per epoch), the tiny ResNet-8 recipe, the short schedule, the method
    ``configs/methods/<fragment>.yaml`` patched by ``overrides["method"]``, and the other
    ``overrides`` on top; return its path."""
    overrides = dict(overrides or {})
    bases = [
        REPO / "configs/_base_/datasets/digits.yaml",
        REPO / "configs/_base_/models/resnet8_w16_gray.yaml",
        REPO / "configs/_base_/schedules/sgd_cosine_short.yaml",
        REPO / "configs/_base_/runtime.yaml",
    ]
    cfg = {
        "_base_": [str(b) for b in bases],
        "train_dataloader": {"dataset": {"max_samples": 128}},
        "train_cfg": {"max_epochs": epochs},
        "method": method_of(fragment, overrides.pop("method", None)),
        **overrides,
    }
    config = tmp_path / f"digits_{fragment}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return config


def train_config(config, work_dir, epochs: int, extra_args=(), first_epoch: int = 1) -> dict:
    """Run tools/train.py on ``config`` into ``work_dir``; check that it finished epochs
    ``first_epoch..epochs`` with finite losses; return its result.json."""
    run_tool("tools/train.py", config, "--work-dir", work_dir, *extra_args)
    result = json.loads((work_dir / "result.json").read_text())
    assert result["status"] == "finished", result["status"]
    assert [h["epoch"] for h in result["history"]] == list(range(first_epoch, epochs + 1))
    assert all(math.isfinite(h["train_loss"]) and h["train_loss"] > 0 for h in result["history"])
    assert 0 <= result["metrics"]["top1_last"] <= 100
    return result


def train_then_resume(tmp_path, fragment: str, overrides: dict) -> tuple:
    """Train ``fragment`` 2 epochs on digits, then again resumed from the epoch-1 checkpoint
    into a fresh work dir; check both end with the same validation record and return
    ``(result, checkpoint, resumed_checkpoint)`` (the epoch-2 checkpoints, loaded)."""
    import torch

    result = train_on_digits(tmp_path, fragment, overrides)
    first = tmp_path / "work"
    resumed = train_on_digits(
        tmp_path, fragment, overrides, name="resumed", extra_args=("--resume", first / "epoch_1.pth")
    )
    assert resumed["history"][-1] | {"wall_s": 0} == result["history"][-1] | {"wall_s": 0}
    load = lambda path: torch.load(path, map_location="cpu", weights_only=False)  # noqa: E731
    return result, load(first / "epoch_2.pth"), load(tmp_path / "resumed" / "epoch_2.pth")


def train_and_resume(tmp_path, name: str, overrides=None) -> tuple:
    """configs/methods/<name>.yaml on a width-16 ResNet-8, 2 epochs on 128 digits images,
    then again resumed from the epoch-1 checkpoint into a fresh work dir: both end with the
    same validation record and bit-identical weights. Returns ``(result, checkpoint)``."""
    import torch

    keep = {"default_hooks": {"checkpoint": {"max_keep_ckpts": 2}}}  # epoch_1.pth stays
    result, a, b = train_then_resume(tmp_path, name, {**keep, **(overrides or {})})
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"resumed run differs in {key}"
    return result, a
