"""Shared plumbing of the analysis tools: a trained run loaded from its config and
checkpoint, a classifier that takes pixels in [0, 1], batched evaluation, JSON output.

Every analysis works in *pixel space*: images are float tensors in [0, 1] (uint8 / 255),
and :class:`PixelSpaceClassifier` applies the run's own normalization (the data
preprocessor's mean/std, given in 0..255 units) inside the model. Attacks, corruptions and
occlusions are therefore defined on real images, and an epsilon of 8/255 means 8 grey
levels whatever the normalization.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mixbench.results import atomic_write_json

from . import ANALYSIS_DIR


class PixelSpaceClassifier(nn.Module):
    """``logits = classifier.logits((255 * x - mean) / std)`` for ``x`` in [0, 1].

    Args:
        classifier: a ``MixupClassifier`` (anything with ``.logits`` and a
            ``data_preprocessor`` holding ``mean``/``std`` buffers of shape (1, C, 1, 1)).
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier
        pre = classifier.data_preprocessor
        self.register_buffer("mean", pre.mean.detach().clone().float(), persistent=False)
        self.register_buffer("std", pre.std.detach().clone().float(), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"images have {x.shape[1]} channels, the model expects "
                f"{self.mean.shape[1]} (its data preprocessor's mean/std)"
            )
        return (x * 255.0 - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.logits(self.normalize(x))


@dataclass
class LoadedRun:
    """A trained run ready for analysis."""

    cfg: dict
    classifier: nn.Module  # the MixupClassifier, in eval mode
    model: PixelSpaceClassifier  # the same network taking [0, 1] pixels
    dataset: object  # the validation dataset of the config
    work_dir: Path  # where analysis/<name>.json goes
    device: torch.device

    @property
    def num_classes(self) -> int:
        return int(self.classifier.num_classes)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_checkpoint_state(path: str | os.PathLike) -> dict:
    """The model ``state_dict`` of an mmengine checkpoint (or of a bare state dict file),
    loaded weights-only (:mod:`mixbench.checkpoint`)."""
    from mixbench.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path} (expected a .pth written by "
            "tools/train.py, e.g. <work_dir>/epoch_N.pth)"
        )
    ckpt = load_checkpoint(path)  # weights-only: a crafted file cannot run code
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        return ckpt["state_dict"]
    if isinstance(ckpt, dict) and all(isinstance(v, Tensor) for v in ckpt.values()):
        return ckpt
    raise ValueError(
        f"{path}: not a checkpoint: expected a dict with a 'state_dict' (mmengine) or a plain state dict"
    )


def build_classifier(
    cfg: dict, checkpoint: str | os.PathLike | None = None, device: torch.device | None = None
) -> nn.Module:
    """The config's model (its method assembled in, :func:`mixbench.method.resolve_method`)
    with the checkpoint's weights, in eval mode."""
    import mixbench.models  # noqa: F401  (registers the models)
    from mixbench.method import resolve_method
    from mixbench.registry import MODELS

    model = MODELS.build(resolve_method(cfg)["model"])
    if checkpoint is not None:
        state = load_checkpoint_state(checkpoint)
        state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{checkpoint} does not match the config's model: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]} (is it the run's "
                "own config.yaml?)"
            )
    return model.to(device or default_device()).eval()


def build_val_dataset(cfg: dict, max_samples: int | None = None):
    """The validation dataset of ``cfg`` (``val_dataloader.dataset``), optionally truncated
    to its first ``max_samples`` items."""
    import mixbench.data  # noqa: F401  (registers the datasets)
    from mixbench.registry import DATASETS

    ds = DATASETS.build(dict(cfg["val_dataloader"]["dataset"]))
    if max_samples is not None:
        if max_samples <= 0:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        ds = torch.utils.data.Subset(ds, range(min(max_samples, len(ds))))
    return ds


def load_run(
    config: str | os.PathLike,
    checkpoint: str | os.PathLike,
    cfg_options=None,
    work_dir: str | os.PathLike | None = None,
    max_samples: int | None = None,
    device: torch.device | str | None = None,
) -> LoadedRun:
    """Load a trained run: config (+ ``--cfg-options``), checkpoint, validation set.

    ``work_dir`` defaults to the checkpoint's folder (tools/train.py writes checkpoints
    into the run's work dir, next to result.json)."""
    from mixbench.config import load_config

    cfg = load_config(config, cfg_options)
    device = torch.device(device) if device is not None else default_device()
    classifier = build_classifier(cfg, checkpoint, device)
    model = PixelSpaceClassifier(classifier).to(device).eval()
    return LoadedRun(
        cfg=cfg,
        classifier=classifier,
        model=model,
        dataset=build_val_dataset(cfg, max_samples),
        work_dir=Path(work_dir) if work_dir else Path(checkpoint).resolve().parent,
        device=device,
    )


def batches(dataset, batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """``(indices, uint8 images (B, C, H, W), int64 labels (B,))`` in dataset order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        items = [dataset[i] for i in idx]
        images = torch.stack([torch.as_tensor(it["inputs"]) for it in items])
        if images.dtype != torch.uint8:
            raise ValueError(f"dataset items must be uint8 images, got {images.dtype}")
        labels = torch.stack([torch.as_tensor(it["data_samples"]) for it in items]).long()
        yield torch.as_tensor(list(idx)), images, labels


def to_unit(images: Tensor, device=None) -> Tensor:
    """uint8 images -> float in [0, 1] on ``device``."""
    return images.to(device).float().div_(255.0)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    batch_size: int = 256,
    device=None,
    transform: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(logits (N, K), labels (N,))`` of ``model`` (pixel space) on ``dataset``.

    ``transform(indices, images_uint8) -> images`` (uint8 or float in [0, 1]) is applied
    to each batch first (a corruption, an occlusion)."""
    device = device or next(model.parameters()).device
    all_logits, all_labels = [], []
    for idx, images, labels in batches(dataset, batch_size):
        if transform is not None:
            images = transform(idx, images)
        x = to_unit(images, device) if images.dtype == torch.uint8 else images.to(device)
        all_logits.append(model(x).float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in %."""
    return float((logits.argmax(1) == labels).double().mean() * 100)


def analysis_path(work_dir: str | os.PathLike, name: str, suffix: str = ".json") -> Path:
    """``<work_dir>/analysis/<name><suffix>``: where an analysis writes its files."""
    return Path(work_dir) / ANALYSIS_DIR / f"{name}{suffix}"


def write_analysis(work_dir: str | os.PathLike, name: str, payload: dict) -> Path:
    """Write ``<work_dir>/analysis/<name>.json`` atomically and return its path.

    ``payload`` must hold a ``summary`` dict of headline numbers: the leaderboard reads
    those (see mixbench.leaderboard.ingest). The file also gets ``analysis`` (= ``name``)
    and ``updated`` (UTC, ISO 8601: a newer file of the same kind replaces an older one in
    the results database)."""
    from datetime import datetime, timezone

    if not isinstance(payload.get("summary"), dict):
        raise ValueError(f"analysis {name!r}: payload needs a 'summary' dict of numbers")
    path = analysis_path(work_dir, name)
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    atomic_write_json(path, {"analysis": name, "updated": stamp, **payload})
    return path


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Lay out, save (PNG, 120 dpi, parent folders created) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
