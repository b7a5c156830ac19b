"""bench/learnable.py: every row builds its method's model on its backbone and takes a training
step (tiny sizes), and the row selection adds the Vanilla of each backbone."""

import argparse

import pytest
import torch
from mbtest.repo import load_script

bench = load_script("bench/learnable.py")
TINY = argparse.Namespace(
    device="cpu", batch=4, width=4, size=32, vit_dim=32, vit_depth=4, patch=4, rounds=1, iters=1
)


@pytest.mark.parametrize("name", list(bench.ROWS))
def test_every_row_builds_and_steps(name):
    row = bench.ROWS[name]
    torch.manual_seed(0)
    step = bench.make_step(name, TINY)
    model = step.module
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    step()
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: the step changed no weight"
    assert type(model.backbone).__name__ == {"ResNet": "ResNetCIFAR", "ViT": "ViTBackbone"}[row.backbone]
    assert row.units >= 3.0  # a method step does at least Vanilla's passes


def test_rows_use_their_method_files_type():
    cfg = bench.model_config("RankMixup-MRL", TINY)
    assert cfg["type"] == "RankMixupClassifier" and cfg["ranking"] == "mrl"
    assert cfg["backbone"]["type"] == "ResNetCIFAR"
    assert bench.model_config("GuidedMixup", TINY)["mixer"]["prob"] == 1.0  # patched: every step mixes
    assert bench.model_config("TokenMix", TINY)["min_tokens"] == 64 // 14  # an 8 x 8 grid


def test_selection_adds_the_vanilla_of_each_backbone_and_refuses_unknown_rows():
    assert bench.selected(["MixPro", "SnapMix"]) == ["Vanilla", "SnapMix", "Vanilla-ViT", "MixPro"]
    with pytest.raises(SystemExit, match="'RegMixup'"):
        bench.selected(["RegMixUp"])
