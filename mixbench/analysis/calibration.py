"""Calibration: expected calibration error (ECE), adaptive ECE, NLL, Brier score and the
reliability diagram.

- ECE (Naeini et al., AAAI 2015; Guo et al., "On Calibration of Modern Neural Networks",
  ICML 2017): split confidences into M equal-width bins I_m = ((m-1)/M, m/M] (a confidence
  of exactly 0 goes to the first bin); with B_m the samples whose *own* top-1 confidence
  falls in I_m,
  ``ECE = sum_m |B_m|/N * |acc(B_m) - conf(B_m)|``, where ``acc(B_m)`` is the fraction of
  B_m predicted correctly and ``conf(B_m)`` its mean confidence. Default M = 15 (Guo et al.).
  Each sample's confidence stays paired with its own correctness. (OpenMixup's version sorts
  the accuracies and the confidences independently before binning, which pairs the k-th
  smallest confidence with the k-th smallest correctness and breaks every bin; see
  tests/analysis/test_analysis.py.)
- Adaptive ECE (Nguyen & O'Connor, EMNLP 2015; Nixon et al., "Measuring Calibration in
  Deep Learning", CVPR-W 2019): the same sum over M bins holding equal numbers of samples
  (sorted by confidence, split with ``numpy.array_split``).
- NLL: ``-mean_i log p_i(y_i)``.
- Brier score (Brier 1950), multi-class: ``mean_i sum_k (p_ik - 1[y_i = k])^2`` (0..2).

ECE, adaptive ECE and accuracy are reported in %; NLL in nats; Brier unitless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEFAULT_BINS = 15


def _check(confidences: Tensor, correct: Tensor, n_bins: int) -> tuple[Tensor, Tensor]:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    # binning runs on the CPU (the bin edges live there; numpy splits the adaptive bins)
    confidences = torch.as_tensor(confidences).detach().cpu().to(torch.float64).flatten()
    correct = torch.as_tensor(correct).detach().cpu().flatten().to(torch.float64)
    if confidences.numel() != correct.numel() or confidences.numel() == 0:
        raise ValueError(
            f"need as many correctness flags as confidences (and at least one), "
            f"got {correct.numel()} and {confidences.numel()}"
        )
    if confidences.min() < 0 or confidences.max() > 1:
        raise ValueError("confidences must lie in [0, 1] (softmax probabilities)")
    return confidences, correct


def calibration_bins(confidences: Tensor, correct: Tensor, n_bins: int = DEFAULT_BINS) -> list[dict]:
    """Equal-width bins ((m-1)/M, m/M]: per bin its edges, count, accuracy and mean
    confidence (None for an empty bin), pairing each sample's confidence with its own
    correctness."""
    return _bins(*_check(confidences, correct, n_bins), n_bins)


def _bins(conf: Tensor, corr: Tensor, n_bins: int) -> list[dict]:
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bucketize(right=False): index m with edges[m-1] < c <= edges[m]; c = 0 -> 0 -> bin 0
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp_(0, n_bins - 1)
    bins = []
    for m in range(n_bins):
        sel = idx == m
        n = int(sel.sum())
        bins.append(
            {
                "low": float(edges[m]),
                "high": float(edges[m + 1]),
                "count": n,
                "accuracy": float(corr[sel].mean()) if n else None,
                "confidence": float(conf[sel].mean()) if n else None,
            }
        )
    return bins


def _weighted_gap(bins: list[dict]) -> float:
    total = sum(b["count"] for b in bins)  # every sample falls in exactly one bin
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])


def expected_calibration_error(confidences: Tensor, correct: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """ECE as a fraction in [0, 1] (see the module docstring)."""
    return _weighted_gap(calibration_bins(confidences, correct, n_bins))


def adaptive_calibration_error(confidences: Tensor, correct: Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Adaptive (equal-mass) ECE as a fraction in [0, 1]."""
    return _adaptive_gap(*_check(confidences, correct, n_bins), n_bins)


def _adaptive_gap(conf: Tensor, corr: Tensor, n_bins: int) -> float:
    order = torch.argsort(conf, stable=True).numpy()
    total = 0.0
    for part in np.array_split(order, min(n_bins, len(order))):
        part = torch.from_numpy(part)
        total += len(part) * abs(float(corr[part].mean()) - float(conf[part].mean()))
    return total / conf.numel()


def calibration_metrics(logits: Tensor, labels: Tensor, n_bins: int = DEFAULT_BINS) -> dict:
    """All calibration numbers of a set of predictions: ``{"summary": {...}, "bins": [...]}``
    with ``summary = {top1, ece, adaptive_ece, nll, brier}`` (top1 and the ECEs in %)."""
    logits = torch.as_tensor(logits).detach().cpu().double()
    labels = torch.as_tensor(labels).cpu().long()
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    correct = pred == labels
    log_p = logits.log_softmax(1).gather(1, labels[:, None]).squeeze(1)
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).double()
    conf, corr = _check(conf, correct, n_bins)  # once: float64 on the CPU
    bins = _bins(conf, corr, n_bins)
    summary = {
        "top1": float(corr.mean() * 100),
        "ece": _weighted_gap(bins) * 100,
        "adaptive_ece": _adaptive_gap(conf, corr, n_bins) * 100,
        "nll": float(-log_p.mean()),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
    }
    return {"summary": summary, "n_bins": n_bins, "num_samples": len(labels), "bins": bins}


def reliability_diagram(
    bins: list[dict], path: str | Path, title: str = "", ece: float | None = None
) -> Path:
    """Reliability diagram PNG: per-bin accuracy bars against the diagonal (perfect
    calibration), the gap to the bin's mean confidence hatched, and the share of samples per
    bin underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .common import save_figure

    lows = np.array([b["low"] for b in bins])
    width = bins[0]["high"] - bins[0]["low"]
    counts = np.array([b["count"] for b in bins], dtype=float)
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["count"] else 0.0 for b in bins])
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.bar(lows, acc, width=width, align="edge", color="#4c72b0", edgecolor="white", label="accuracy")
    has = counts > 0
    # the gap is hatched, not filled: the blue bar's height stays the accuracy also where
    # the bin is underconfident (gap inside the bar) and not only where it is overconfident
    ax.bar(
        lows[has],
        (conf - acc)[has],
        bottom=acc[has],
        width=width,
        align="edge",
        facecolor="none",
        edgecolor="#dd8452",
        hatch="///",
        linewidth=1.2,
        label="gap to mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    head = title + ("\n" if title else "") + (f"ECE = {ece:.2f}%" if ece is not None else "")
    ax.set_title(head, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    axh.bar(
        lows, counts / max(counts.sum(), 1), width=width, align="edge", color="#55a868", edgecolor="white"
    )
    axh.set_xlabel("confidence (top-1 probability)")
    axh.set_ylabel("share of samples")
    return save_figure(fig, path)


def run_calibration(
    run, n_bins: int = DEFAULT_BINS, batch_size: int = 256, out_name: str = "calibration"
) -> dict:
    """Calibration of a loaded run (:func:`mixbench.analysis.common.load_run`) on its
    validation set; writes ``analysis/calibration.json`` and ``analysis/calibration.png``."""
    from .common import analysis_path, evaluate, write_analysis

    logits, labels = evaluate(run.model, run.dataset, batch_size, run.device)
    result = calibration_metrics(logits, labels, n_bins)
    png = analysis_path(run.work_dir, out_name, ".png")
    reliability_diagram(result["bins"], png, title=run.work_dir.name, ece=result["summary"]["ece"])
    result["figure"] = png.name
    result["json"] = str(write_analysis(run.work_dir, out_name, result))
    return result
