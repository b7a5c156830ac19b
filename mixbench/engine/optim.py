"""Optimizer wrapper for autocast on any device (bf16 on CPU)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from mixbench.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """OptimWrapper whose forward runs under ``torch.autocast(device_type, dtype)``.

    mmengine's AmpOptimWrapper only runs on accelerators; this one is for bf16 autocast on
    CPU (no loss scaling is needed for bfloat16). On CUDA use AmpOptimWrapper (fp16 + scaler).
    """

    def __init__(self, *args, dtype: str = "bfloat16", device_type: str = "cpu", **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(torch, dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        self.autocast_dtype = getattr(torch, dtype)
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.autocast_dtype):
            yield
