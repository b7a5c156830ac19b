"""Input-gradient saliency, computed without side effects on the model.

Used by PuzzleMix and Co-Mixup (and reusable by any saliency-guided mixer):

    s(x)_{hw} = sqrt( mean_c (d CE(f(x), y) / d x_{chw})^2 )

the root-mean-square over channels of the gradient of the batch-mean cross-entropy with
respect to the input, as in the official PuzzleMix / Co-Mixup code (Kim et al. 2020, 2021).

The pass runs the model in eval mode (BatchNorm uses, and does not update, its running
statistics; dropout is off), differentiates with :func:`torch.autograd.grad` with respect
to the input only (no parameter's ``.grad`` is created or changed), and restores every
submodule's own train/eval flag afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def model_logits(model, x: Tensor) -> Tensor:
    """``model.logits(x)`` for classifiers following the mixbench contract, else ``model(x)``."""
    logits_fn = getattr(model, "logits", None)
    return logits_fn(x) if callable(logits_fn) else model(x)


def input_gradient_saliency(model, x: Tensor, y: Tensor) -> Tensor:
    """(B, H, W) float32 saliency of ``x`` (B, C, H, W) for labels ``y`` (B,), see module doc."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.training = False
        with torch.enable_grad():
            x_var = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model_logits(model, x_var).float(), y)
            (grad,) = torch.autograd.grad(loss, x_var)
    finally:
        for m, flag in zip(modules, flags):
            m.training = flag
    return grad.float().pow(2).mean(1).sqrt()


def train_mode_saliency_and_loss(model, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Saliency (B, H, W) from a *train-mode* pass, and that pass's mean CE loss (with graph).

    For recipes that also train on the clean batch (Co-Mixup's ``clean_lam``): the model
    keeps its train/eval flags (batch statistics, dropout), but every BatchNorm's running
    statistics are frozen for the pass (momentum 0, ``num_batches_tracked`` restored), and
    the gradient is taken with respect to the input only, so no parameter ``.grad`` changes.
    The returned loss keeps its graph: adding it to the training loss trains on it.
    """
    norms = [
        m
        for m in (model.modules() if hasattr(model, "modules") else [])
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms
    ]
    try:
        for m in norms:
            m.momentum = 0.0
        with torch.enable_grad():
            x_var = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model_logits(model, x_var).float(), y)
            (grad,) = torch.autograd.grad(loss, x_var, retain_graph=True)
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)
    return grad.float().pow(2).mean(1).sqrt(), loss
