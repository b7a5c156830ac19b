"""Occlusion robustness: accuracy as a growing fraction of image patches is dropped.

Random patch drop (Naseer et al., "Intriguing Properties of Vision Transformers", NeurIPS
2021; used for mixup by Patch Mixing, Lee et al. 2023): the image is cut into a grid of
``patch_size`` x ``patch_size`` patches (default: a 4 x 4 grid, i.e. ``H // 4`` pixels; 16
px on 224 images as in Naseer et al., 8 px on CIFAR), and ``round(fraction * P)`` of the P
patches, drawn at random per image, are set to ``fill`` (0 = black, as in Naseer et al.).
The fraction grows from 0 to 0.9 in steps of 0.1. Image ``i`` draws its patches from
``torch.Generator().manual_seed(seed * 1_000_003 + i)``, so each fraction drops a superset
of the patches of the smaller fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

DEFAULT_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(10))


def occlude(
    images: Tensor,
    fraction: float,
    patch_size: int,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    fill: float = 0.0,
) -> Tensor:
    """Drop ``round(fraction * P)`` random patches of each image of a float batch
    (B, C, H, W) in [0, 1]; returns a new tensor."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    b, _, h, w = images.shape
    if patch_size <= 0 or h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the image size {h}x{w}")
    gh, gw = h // patch_size, w // patch_size
    n_drop = int(round(fraction * gh * gw))
    out = images.clone()
    if n_drop == 0:
        return out
    indices = range(b) if indices is None else [int(i) for i in indices]
    keep = torch.ones(b, gh * gw, dtype=images.dtype)
    for row, i in enumerate(indices):
        order = torch.randperm(gh * gw, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
        keep[row, order[:n_drop]] = 0
    keep = keep.view(b, 1, gh, gw).repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    keep = keep.to(images.device)
    return out * keep + fill * (1 - keep)


def occlusion_curve(
    model,
    dataset,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    patch_size: int | None = None,
    seed: int = 0,
    fill: float = 0.0,
    batch_size: int = 256,
    device=None,
) -> dict:
    """Top-1 (%) at each dropped fraction: ``{"summary": {"occlusion_top1_f0.5", "auc"},
    "curve": [{"fraction", "top1"}], "patch_size"}``; ``auc`` is the mean top-1 over the
    fractions (trapezoid area over [0, 0.9] divided by 0.9 for the default grid)."""
    from .common import evaluate, to_unit, top1

    h = dataset[0]["inputs"].shape[-1]
    patch_size = patch_size or max(1, h // 4)
    device = device or next(model.parameters()).device
    curve = []
    for f in fractions:
        logits, labels = evaluate(
            model,
            dataset,
            batch_size,
            device,
            transform=lambda idx, im, f=f: occlude(
                to_unit(im, device), f, patch_size, seed, idx.tolist(), fill
            ),
        )
        curve.append({"fraction": float(f), "top1": top1(logits, labels)})
    xs = [c["fraction"] for c in curve]
    ys = [c["top1"] for c in curve]
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    summary = {f"occlusion_top1_f{c['fraction']:g}": c["top1"] for c in curve}
    summary["auc"] = area / (xs[-1] - xs[0]) if len(xs) > 1 else ys[0]
    return {
        "summary": summary,
        "curve": curve,
        "patch_size": patch_size,
        "seed": seed,
        "fill": fill,
        "num_samples": len(dataset),
    }


def plot_occlusion(curves: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """Top-1 against the dropped fraction, one line per run (``{label: curve}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .common import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        ax.plot([c["fraction"] for c in curve], [c["top1"] for c in curve], "o-", label=label)
    ax.set_xlabel("fraction of patches dropped")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title or "occlusion robustness", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run_occlusion(
    run,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    patch_size: int | None = None,
    seed: int = 0,
    fill: float = 0.0,
    batch_size: int = 256,
) -> dict:
    """Occlusion curve of a loaded run; writes ``analysis/occlusion.json`` and ``.png``."""
    from .common import analysis_path, write_analysis

    result = occlusion_curve(
        run.model, run.dataset, fractions, patch_size, seed, fill, batch_size, run.device
    )
    png = plot_occlusion(
        {run.work_dir.name: result["curve"]},
        analysis_path(run.work_dir, "occlusion", ".png"),
        f"occlusion, {result['patch_size']}px patches",
    )
    result["figure"] = png.name
    result["json"] = str(write_analysis(run.work_dir, "occlusion", result))
    return result
