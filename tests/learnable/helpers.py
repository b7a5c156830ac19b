"""Shared helpers for the learnable-method tests: a 2-epoch digits run through tools/train.py."""
from __future__ import annotations

import json
import math

import yaml

from mbtest import REPO, run_tool


def train_on_digits(tmp_path, fragment: str, overrides: dict, epochs: int = 2, name: str = "work",
                    extra_args=(), first_epoch: int = 1) -> dict:
    """Train ``configs/mixers/<fragment>.yaml`` (a complete model) on 128 digits images for
    ``epochs`` epochs with ``overrides`` merged on top; check it finished with a finite
    loss; return result.json. A run resumed into a fresh work dir validates the checkpoint's
    epoch first, so its history starts at ``first_epoch`` = 1 too unless told otherwise."""
    bases = [REPO / "configs/_base_/datasets/digits.yaml", REPO / f"configs/mixers/{fragment}.yaml",
             REPO / "configs/_base_/schedules/sgd_cosine_short.yaml", REPO / "configs/_base_/runtime.yaml"]
    cfg = {"_base_": [str(b) for b in bases],
           "train_dataloader": {"dataset": {"max_samples": 128}},   # 2 iterations per epoch
           "train_cfg": {"max_epochs": epochs}, **overrides}
    config = tmp_path / f"digits_{fragment}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    work_dir = tmp_path / name
    run_tool("tools/train.py", config, "--work-dir", work_dir, *extra_args)
    result = json.loads((work_dir / "result.json").read_text())
    assert result["status"] == "finished", result["status"]
    assert [h["epoch"] for h in result["history"]] == list(range(first_epoch, epochs + 1))
    assert all(math.isfinite(h["train_loss"]) and h["train_loss"] > 0 for h in result["history"])
    assert 0 <= result["metrics"]["top1_last"] <= 100
    return result
