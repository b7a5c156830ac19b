"""Cost: parameter counts and FLOPs against hand formulas (a multiply-add = 2 FLOPs, bias and
element-wise operations not counted), throughput positive."""

import pytest
from torch import nn

from mixbench.analysis.cost import count_flops, count_params, model_cost


def test_params_of_single_layers_by_hand():
    assert count_params(nn.Linear(10, 5)) == 10 * 5 + 5
    assert count_params(nn.Conv2d(3, 8, 3)) == 3 * 8 * 3 * 3 + 8
    conv_bn = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
    assert count_params(conv_bn) == 3 * 8 * 3 * 3 + 2 * 8  # BN: weight and bias per channel


@pytest.mark.parametrize("batch", [1, 4])
def test_linear_flops_equal_two_macs(batch):
    assert count_flops(nn.Linear(10, 5), (batch, 10)) == 2 * batch * 10 * 5


@pytest.mark.parametrize("stride,out_size", [(1, 16), (2, 8)])
def test_conv_flops_equal_hand_formula(stride, out_size):
    # 2 * batch * C_out * H_out * W_out * (C_in * k * k)
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1)
    assert count_flops(conv, (2, 3, 16, 16)) == 2 * 2 * 8 * out_size * out_size * (3 * 3 * 3)


def test_model_cost_of_the_trained_run(trained):
    clf = trained.classifier
    out = model_cost(clf, 1, [16, 32], batch_size=8, warmup=1, iters=2)
    assert out["params"] == sum(p.numel() for p in clf.parameters())
    assert out["backbone_params"] == sum(p.numel() for p in clf.backbone.parameters())
    assert out["summary"]["params_m"] == pytest.approx(out["params"] / 1e6)
    small, large = out["sizes"]
    assert small["macs"] * 2 == small["flops"] > 0
    # convolutions scale with the pixels (x4); the head's matmul does not (global pooling)
    assert 3.5 * small["flops"] < large["flops"] <= 4 * small["flops"]
    assert small["img_per_s"] > 0 and out["summary"]["img_per_s@16"] == small["img_per_s"]
