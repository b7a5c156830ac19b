"""Cross-entropy for mixed targets."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.registry import MODELS


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample ``-sum_k t_k log softmax(z)_k`` for a (B, K) target distribution."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1)


@MODELS.register_module()
class MixedCrossEntropy(nn.Module):
    """Mixup loss, per sample: ``lam * CE(z, y_a) + (1 - lam) * CE(z, y_b)``, averaged over
    the batch; with label smoothing ``eps`` each CE uses ``(1 - eps) * onehot + eps / K``.
    When the mix carries ``soft_targets`` (Co-Mixup, token labels) it is the soft-target
    cross-entropy against them (smoothed the same way).

    Equal to CE against the mixed one-hot target ``lam * e_{y_a} + (1 - lam) * e_{y_b}``
    because CE is linear in the target.
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, mix) -> Tensor:
        if mix.soft_targets is not None:
            t = mix.soft_targets.float()
            if self.label_smoothing:
                t = t * (1 - self.label_smoothing) + self.label_smoothing / t.shape[1]
            return soft_cross_entropy(logits, t).mean()
        z = logits.float()
        ce_a = F.cross_entropy(z, mix.y_a, reduction="none", label_smoothing=self.label_smoothing)
        lam = mix.lam.to(z.dtype)
        if bool((lam == 1).all()):  # unmixed batch: skip the second cross-entropy
            return ce_a.mean()
        ce_b = F.cross_entropy(z, mix.y_b, reduction="none", label_smoothing=self.label_smoothing)
        return (lam * ce_a + (1 - lam) * ce_b).mean()
