"""Top-k accuracy as an mmengine metric (per-sample results, so DDP padding is trimmed)."""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.evaluator import BaseMetric

from mixbench.registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent; reports ``top1``, ``top5``... for each k in ``topk``
    (k larger than the number of classes counts every sample as correct)."""

    default_prefix = ""

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk values must be positive integers, got {topk}")

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for out in data_samples:
            logits, labels = out["logits"], out["labels"]
            k = min(max(self.topk), logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hits = top == labels.to(top.device)[:, None]
            ranks = torch.where(hits.any(1), hits.float().argmax(1), torch.full_like(labels, k))
            # one entry per sample: the rank of the true class (k = not in the top k)
            self.results.extend(ranks.cpu().tolist())

    def compute_metrics(self, results: list) -> dict:
        ranks = torch.tensor(results)
        return {f"top{k}": round(float((ranks < k).double().mean() * 100), 4) for k in self.topk}
