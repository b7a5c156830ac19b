"""Training smoke for the mixers that use the network (ManifoldMix, AlignMix, AttentiveMix,
AttentiveMix+): each trains a width-16 ResNet-8 on digits for 2 epochs through
tools/train.py, with the method's own config fragment from configs/mixers/."""
import json
import math

import pytest

from mbtest import REPO, run_tool

METHODS = {"manifoldmix": "ManifoldMix", "alignmix": "AlignMix",
           "attentivemix": "AttentiveMix", "attentivemix_plus": "AttentiveMixPlus"}


@pytest.mark.parametrize("fragment", sorted(METHODS))
def test_two_epochs_on_digits(tmp_path, fragment):
    bases = ["datasets/digits.yaml", "models/resnet8_w16_gray.yaml",
             "schedules/sgd_cosine_short.yaml", "runtime.yaml"]
    config = tmp_path / f"digits_{fragment}.yaml"
    config.write_text(
        "_base_:\n"
        + "".join(f"  - {REPO / 'configs/_base_' / b}\n" for b in bases)
        + f"  - {REPO / 'configs/mixers' / fragment}.yaml\n"
        + "train_dataloader: {dataset: {max_samples: 128}}\n"   # 2 iterations per epoch
        + "train_cfg: {max_epochs: 2}\n")
    work_dir = tmp_path / "work"
    run_tool("tools/train.py", config, "--work-dir", work_dir)
    result = json.loads((work_dir / "result.json").read_text())
    assert result["status"] == "finished"
    assert result["run"]["method"] == METHODS[fragment]
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(math.isfinite(h["train_loss"]) and h["train_loss"] > 0 for h in result["history"])
    assert 0 <= result["metrics"]["top1_last"] <= 100
