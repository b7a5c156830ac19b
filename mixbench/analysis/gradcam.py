"""Grad-CAM class activation maps (Selvaraju et al., "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV 2017).

For the feature map A (C, h, w) after the backbone's last stage (``stage`` selects another)
and the score y^c of class c (the prediction by default):
``alpha_k = mean_{i,j} d y^c / d A_k[i, j]``, ``CAM = ReLU(sum_k alpha_k A_k)``, upsampled
bilinearly to the image size and scaled to [0, 1] per image (an all-zero map stays zero).
This is the saliency SaliencyMix/PuzzleMix-style methods rely on, shown per trained model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor


def grad_cam(
    model, x: Tensor, target: Tensor | None = None, stage: int | None = None
) -> tuple[Tensor, Tensor]:
    """``(cams (B, H, W) in [0, 1], logits (B, K))`` for images ``x`` (B, C, H, W) in [0, 1].

    ``model`` is a :class:`~mixbench.analysis.common.PixelSpaceClassifier`; ``target`` the
    classes to explain (default: the predicted ones); ``stage`` the backbone stage whose
    output is A (1..num_stages, default the last)."""
    clf = model.classifier
    stage = stage or clf.backbone.num_stages
    if not 1 <= stage <= clf.backbone.num_stages:
        raise ValueError(f"stage must be in 1..{clf.backbone.num_stages}, got {stage}")
    saved = {}

    def hook(k: int, feat: Tensor) -> Tensor:
        if k == stage:
            feat.retain_grad()
            saved["a"] = feat
        return feat

    was_training = model.training
    model.eval()
    with torch.enable_grad():
        logits = clf.logits(model.normalize(x.detach()), stage_hook=hook)
        target = logits.argmax(1) if target is None else target.to(logits.device)
        logits.gather(1, target[:, None]).sum().backward()
    model.train(was_training)
    a, g = saved["a"].detach(), saved["a"].grad
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    clf.zero_grad(set_to_none=True)
    return (cam / peak).cpu(), logits.detach().cpu()


def cam_grid(
    images: Tensor, cams: Tensor, titles: Sequence[str], path: str | Path, suptitle: str = ""
) -> Path:
    """PNG grid: one column per image, the image on top and its Grad-CAM overlay below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .common import save_figure

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.3), squeeze=False)
    for j in range(n):
        img = images[j].permute(1, 2, 0).cpu().numpy()
        kw = {"cmap": "gray", "vmin": 0, "vmax": 1} if img.shape[-1] == 1 else {}
        img = img[..., 0] if img.shape[-1] == 1 else img
        axes[0, j].imshow(img, interpolation="nearest", **kw)
        axes[0, j].set_title(titles[j], fontsize=8)
        axes[1, j].imshow(img, interpolation="nearest", **kw)
        axes[1, j].imshow(cams[j].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path)


def run_gradcam(run, num_images: int = 8, seed: int = 0, stage: int | None = None) -> dict:
    """Grad-CAM grid of ``num_images`` validation images drawn with ``seed``; writes
    ``analysis/gradcam.png`` and ``analysis/gradcam.json`` (which images, labels,
    predictions)."""
    from .common import analysis_path, to_unit, write_analysis

    n = min(num_images, len(run.dataset))
    pick = torch.randperm(len(run.dataset), generator=torch.Generator().manual_seed(seed))[:n]
    items = [run.dataset[int(i)] for i in pick]
    x = to_unit(torch.stack([it["inputs"] for it in items]), run.device)
    labels = torch.stack([torch.as_tensor(it["data_samples"]) for it in items]).long()
    cams, logits = grad_cam(run.model, x, stage=stage)
    preds = logits.argmax(1)
    classes = getattr(run.dataset, "classes", None) or getattr(
        getattr(run.dataset, "dataset", None), "classes", None
    )
    name = (lambda k: str(classes[k])) if classes else str
    titles = [f"label {name(int(y))}\npred {name(int(p))}" for y, p in zip(labels, preds)]
    png = cam_grid(
        x, cams, titles, analysis_path(run.work_dir, "gradcam", ".png"), f"Grad-CAM, {run.work_dir.name}"
    )
    result = {
        "summary": {},
        "indices": pick.tolist(),
        "labels": labels.tolist(),
        "predictions": preds.tolist(),
        "figure": png.name,
        "seed": seed,
    }
    result["json"] = str(write_analysis(run.work_dir, "gradcam", result))
    return result
