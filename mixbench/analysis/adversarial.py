"""Adversarial robustness: FGSM and PGD, L-infinity, in pixel space.

- FGSM (Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015):
  ``x_adv = clip_[0,1](x + eps * sign(grad_x CE(f(x), y)))``.
- PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
  ICLR 2018): start at ``x + U(-eps, eps)`` (``random_start``), then ``steps`` times
  ``x <- Proj_{B_inf(x0, eps) ∩ [0,1]}(x + step_size * sign(grad_x CE))``.
  Defaults: 10 steps, step size ``eps / 4`` (2/255 at eps 8/255, as in Madry et al.'s
  CIFAR setting of 7 steps of 2/255, here with 10 steps).

Attack radii default to 8/255 and 4/255 (the CIFAR convention; Puzzle Mix reports FGSM at
8/255). The model is in eval mode (BatchNorm uses its running statistics, dropout is off)
and takes pixels in [0, 1]; normalization happens inside it
(:class:`mixbench.analysis.common.PixelSpaceClassifier`), so eps is in pixel units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_EPS = (8 / 255, 4 / 255)
DEFAULT_PGD_STEPS = 10


def _input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """One signed-gradient step of size ``eps`` from ``x`` (in [0, 1]), clipped to [0, 1]."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if eps == 0:
        return x.detach().clone()
    return (x + eps * _input_grad(model, x, y).sign()).clamp_(0, 1).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = DEFAULT_PGD_STEPS,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent in the L-inf ball of radius ``eps`` around ``x``.

    ``step_size`` defaults to ``eps / 4``; ``random_start`` draws the start uniformly in the
    ball from ``generator`` (reproducible for a seeded generator)."""
    if eps < 0 or steps < 1:
        raise ValueError(f"need eps >= 0 and steps >= 1, got eps={eps}, steps={steps}")
    step_size = eps / 4 if step_size is None else step_size
    x0 = x.detach()
    adv = x0.clone()
    if random_start and eps > 0:
        noise = torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device)
        adv = (adv + (noise * 2 - 1) * eps).clamp_(0, 1)
    for _ in range(steps):
        adv = adv + step_size * _input_grad(model, adv, y).sign()
        adv = torch.min(torch.max(adv, x0 - eps), x0 + eps).clamp_(0, 1).detach()
    return adv


def eps_name(eps: float) -> str:
    """``8/255`` -> ``"8"`` (the radius in grey levels), used in summary keys."""
    levels = eps * 255
    return f"{levels:g}" if abs(levels - round(levels)) > 1e-6 else str(int(round(levels)))


def robust_accuracy(
    model: nn.Module,
    dataset,
    eps: Sequence[float] = DEFAULT_EPS,
    attacks: Sequence[str] = ("fgsm", "pgd"),
    steps: int = DEFAULT_PGD_STEPS,
    step_size: float | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device=None,
) -> dict:
    """Top-1 (%) on clean images and under each attack at each radius.

    Returns ``{"summary": {"clean_top1", "fgsm_eps8_top1", "pgd_eps8_top1", ...},
    "attacks": [{"attack", "eps", "steps", "step_size", "top1"}]}`` (eps in [0, 1] units;
    the summary key names the radius in grey levels, ``eps8`` = 8/255)."""
    from .common import batches, to_unit

    unknown = set(attacks) - {"fgsm", "pgd"}
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; choose from fgsm, pgd")
    model.eval()
    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    settings = [(a, e) for a in attacks for e in eps]
    correct = {s: 0 for s in settings}
    clean, total = 0, 0
    for _, images, labels in batches(dataset, batch_size):
        x, y = to_unit(images, device), labels.to(device)
        with torch.no_grad():
            clean += int((model(x).argmax(1) == y).sum())
        for attack, e in settings:
            adv = (
                fgsm(model, x, y, e)
                if attack == "fgsm"
                else pgd(model, x, y, e, steps, step_size, generator=gen)
            )
            with torch.no_grad():
                correct[(attack, e)] += int((model(adv).argmax(1) == y).sum())
        total += len(labels)
    summary = {"clean_top1": 100.0 * clean / total}
    rows = []
    for attack, e in settings:
        acc = 100.0 * correct[(attack, e)] / total
        summary[f"{attack}_eps{eps_name(e)}_top1"] = acc
        rows.append(
            {
                "attack": attack,
                "eps": e,
                "top1": acc,
                "steps": 1 if attack == "fgsm" else steps,
                "step_size": e if attack == "fgsm" else (e / 4 if step_size is None else step_size),
            }
        )
    return {
        "summary": summary,
        "attacks": rows,
        "num_samples": total,
        "seed": seed,
        "space": "pixels in [0, 1], L-inf",
    }


def run_adversarial(
    run,
    eps: Sequence[float] = DEFAULT_EPS,
    attacks: Sequence[str] = ("fgsm", "pgd"),
    steps: int = DEFAULT_PGD_STEPS,
    step_size: float | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict:
    """Robust accuracy of a loaded run; writes ``analysis/adversarial.json``."""
    from .common import write_analysis

    result = robust_accuracy(
        run.model, run.dataset, eps, attacks, steps, step_size, batch_size, seed, run.device
    )
    result["json"] = str(write_analysis(run.work_dir, "adversarial", result))
    return result
