"""Cost of a model: parameters, FLOPs per image and inference throughput.

- Parameters: all parameters of the classifier, and of its backbone alone.
- FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of a
  single image of the given size (a multiply-add counts 2 FLOPs, so MACs = FLOPs / 2; papers
  that say "FLOPs" for ResNets usually mean MACs: ResNet-18 at 224 px is 1.8 G MACs).
  Only the operations PyTorch counts (convolutions, matrix products, attention) are included;
  element-wise operations (BN, ReLU, pooling) are not, as in fvcore and most papers.
- Throughput: images per second of ``model(x)`` in eval mode under ``torch.inference_mode``,
  ``batch_size`` images per call, after ``warmup`` calls, over ``iters`` timed calls (CUDA
  synchronized before reading the clock). It depends on the device and its load: compare
  numbers measured in the same session only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of ``model`` on a zero tensor of ``input_shape``."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(*input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def throughput(model: nn.Module, input_shape: Sequence[int], warmup: int = 3, iters: int = 10) -> float:
    """Images per second of ``model`` at batch shape ``input_shape`` (eval mode)."""
    device = next(model.parameters()).device
    x = torch.rand(*input_shape, device=device)
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
        elapsed = time.perf_counter() - start
    model.train(was_training)
    return input_shape[0] * iters / elapsed


def model_cost(
    classifier: nn.Module,
    in_channels: int,
    input_sizes: Sequence[int],
    batch_size: int = 64,
    warmup: int = 3,
    iters: int = 10,
    measure_throughput: bool = True,
) -> dict:
    """Cost of a ``MixupClassifier`` (``.logits``, ``.backbone``) at each square input
    size: ``{"summary": {"params_m", "flops_g@<size>", "img_per_s@<size>"}, "sizes": [...]}``."""

    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.logits(x)

    net = Logits(classifier)
    params, bb_params = count_params(classifier), count_params(classifier.backbone)
    device = next(classifier.parameters()).device
    rows, summary = [], {"params_m": params / 1e6, "backbone_params_m": bb_params / 1e6}
    for size in input_sizes:
        flops = count_flops(net, (1, in_channels, size, size))
        row = {"input_size": int(size), "flops": flops, "macs": flops // 2, "gflops": flops / 1e9}
        summary[f"gflops@{size}"] = flops / 1e9
        if measure_throughput:
            row["img_per_s"] = throughput(net, (batch_size, in_channels, size, size), warmup, iters)
            row["batch_size"] = batch_size
            summary[f"img_per_s@{size}"] = row["img_per_s"]
        rows.append(row)
    return {
        "summary": summary,
        "params": params,
        "backbone_params": bb_params,
        "sizes": rows,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
    }


def run_cost(
    run,
    input_sizes: Sequence[int] = (),
    batch_size: int = 64,
    warmup: int = 3,
    iters: int = 10,
    measure_throughput: bool = True,
) -> dict:
    """Cost of a loaded run at its validation image size (and ``input_sizes``); writes
    ``analysis/cost.json``."""
    from .common import write_analysis

    sample = run.dataset[0]["inputs"]
    sizes = list(dict.fromkeys([int(sample.shape[-1]), *map(int, input_sizes)]))
    result = model_cost(
        run.classifier, int(sample.shape[0]), sizes, batch_size, warmup, iters, measure_throughput
    )
    result["json"] = str(write_analysis(run.work_dir, "cost", result))
    return result
