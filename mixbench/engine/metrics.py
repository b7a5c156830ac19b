"""Top-k accuracy as an mmengine metric (per-sample results, so DDP padding is trimmed), with
the top-1 of a model's extra heads when its ``predict`` gives them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric

from mixbench.registry import METRICS

#: metric key of an extra head's top-1: ``head_<name>_top1`` (e.g. ``head_mix_k_top1``)
HEAD_KEY = "head_{}_top1"


def head_top1(metrics: dict) -> dict:
    """``{head name: top-1}`` of the extra heads in an evaluation's metrics (empty if none)."""
    return {
        k[len("head_") : -len("_top1")]: v
        for k, v in metrics.items()
        if k.startswith("head_") and k.endswith("_top1") and v is not None
    }


def true_class_rank(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per sample, the rank of the true class among the top ``k`` logits (0 = first), or
    ``k`` when it is not among them."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    hits = top == labels.to(top.device)[:, None]
    return torch.where(hits.any(1), hits.float().argmax(1), torch.full_like(labels.to(top.device), k))


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent; reports ``top1``, ``top5``... for each k in ``topk``
    (k larger than the number of classes counts every sample as correct).

    When a prediction carries ``heads`` (``{name: logits}``: AutoMix, SAMix and AdAutoMix
    evaluate the online and EMA encoder with the mixed and one-hot heads, as OpenMixup
    does), it also reports each head's top-1 as ``head_<name>_top1``; ``top1`` stays the
    model's own prediction (``logits``)."""

    default_prefix = ""

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk values must be positive integers, got {topk}")

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for out in data_samples:
            logits, labels = out["logits"], out["labels"]
            k = max(self.topk)
            ranks = true_class_rank(logits, labels, k).cpu().tolist()
            heads: dict | None = out.get("heads")
            if not heads:
                self.results.extend(ranks)  # one entry per sample: the true class's rank
                continue
            names = sorted(heads)
            correct = torch.stack([true_class_rank(heads[h], labels, 1) == 0 for h in names], 1)
            self.results.extend((r, dict(zip(names, c))) for r, c in zip(ranks, correct.cpu().tolist()))

    def compute_metrics(self, results: list) -> dict:
        with_heads = [r for r in results if isinstance(r, tuple)]
        ranks = torch.tensor([r[0] if isinstance(r, tuple) else r for r in results])
        out = {f"top{k}": round(float((ranks < k).double().mean() * 100), 4) for k in self.topk}
        if with_heads:
            if len(with_heads) != len(results):
                raise ValueError(
                    "some predictions carry extra heads and some do not; a model's "
                    "predict must give the same heads for every batch"
                )
            for name in with_heads[0][1]:
                hits = torch.tensor([bool(r[1][name]) for r in with_heads])
                out[HEAD_KEY.format(name)] = round(float(hits.double().mean() * 100), 4)
        return out
