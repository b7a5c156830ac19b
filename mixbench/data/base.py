"""The dataset base classes: :class:`InMemoryDataset` (a uint8 tensor in memory),
:class:`ImageFileDataset` (image files named by a list; ImageNet, CUB, Aircraft, ...) and
:class:`TransformedDataset` (any dataset plus a per-sample pipeline). Reading files is in
:mod:`mixbench.data.io`, the per-sample pipeline in :mod:`mixbench.data.pipeline`.

A file dataset lists its samples once (class names, relative paths, labels). Listing a folder
of a million files is slow, so ``tools/prepare_data.py index DATASET ROOT`` writes that list
to ``ROOT/mixbench_index/<Dataset>_<split>_<key>.json``; the dataset reads it when it is
present and its key (dataset, split and options) matches.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Sequence
from collections.abc import Sequence as SequenceABC
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info
from torch.utils.data import default_collate as torch_default_collate

from mixbench.registry import DATASETS, FUNCTIONS

from .catalog import entry_of
from .io import DatasetError, decode_batch, decode_file, resolve_decode_device
from .pipeline import build_pipeline

INDEX_DIR = "mixbench_index"
INDEX_FORMAT = "mixbench-index"
INDEX_VERSION = 1


def check_split(cls: type, split: str) -> str:
    """``split`` must be one of the splits that the catalog lists for the dataset class
    ``cls`` (any name for a class outside the catalog, e.g. ImageFolder)."""
    entry = entry_of(cls)
    if entry is not None and split not in entry.splits:
        raise ValueError(f"split must be one of {', '.join(map(repr, entry.splits))}, got {split!r}")
    return split


class GatheredBatch(SequenceABC):
    """A batch gathered with one indexing operation by :meth:`InMemoryDataset.__getitems__`.

    :func:`batch_collate` returns it as a batch directly; any other collate function sees
    an ordinary sequence of per-sample dicts (made on demand), so it stays correct."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return {"inputs": self.images[i], "data_samples": self.labels[i]}


@FUNCTIONS.register_module()
def batch_collate(data):
    """Collate for in-memory datasets: a :class:`GatheredBatch` is already a batch; a list
    of samples is stacked as torch's ``default_collate`` does."""
    if isinstance(data, GatheredBatch):
        return {"inputs": data.images, "data_samples": data.labels}
    return torch_default_collate(list(data))


def check_labels(labels: Tensor, num_classes: int, source: str) -> None:
    """Every label must be a class index in ``[0, num_classes)``: a label outside would only
    fail at the first training iteration that draws it (or silently index another row of a
    soft-target matrix). Raises :class:`DatasetError` naming ``source`` and the first bad one."""
    if labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise DatasetError(
            f"{source}: label {int(labels[i])} of sample {i} is outside 0..{num_classes - 1} "
            f"({int(bad.sum())} such labels); the label file is corrupt or belongs to "
            "another dataset: download it again"
        )


class InMemoryDataset(Dataset):
    """A dataset held in memory as a uint8 tensor (N, C, H, W) and int64 labels (N,).

    Items are ``{"inputs": uint8 (C, H, W), "data_samples": int64 scalar}``; random crop
    and flip run batched in the model's data preprocessor, so indexing is all a loader does.
    A loader fetches a whole batch with one gather (``__getitems__``); with
    ``collate_fn: {type: batch_collate}`` it is used as is.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        classes: class names, ``len(classes)`` = number of classes.
        max_samples: keep only the first ``max_samples`` items (for quick runs and tests).
        device: keep the tensors on this device (e.g. ``cuda``: the whole set resident on
            the GPU, batches gathered there, no host-to-device copy per step). Use it with
            ``num_workers: 0`` and ``pin_memory: false``. Default: host memory.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: Sequence[str],
        max_samples: int | None = None,
        device: str | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        # every label of the file, also those max_samples leaves out: a corrupt file is corrupt
        check_labels(labels.long(), len(classes), getattr(self, "source", None) or type(self).__name__)
        if max_samples is not None:
            if max_samples <= 0:
                raise ValueError(f"max_samples must be positive, got {max_samples}")
            images, labels = images[:max_samples], labels[:max_samples]
        self.images = images.contiguous()
        self.labels = labels.long()
        if device is not None:
            dev = torch.device(device)
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(
                    f"dataset device={device!r} but CUDA is not available: remove "
                    "`device` to keep the data in host memory"
                )
            self.images, self.labels = self.images.to(dev), self.labels.to(dev)
        self.classes = list(classes)
        self.metainfo = {"classes": self.classes, "num_classes": len(self.classes)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, idx: int) -> dict:
        return {"inputs": self.images[idx], "data_samples": self.labels[idx]}

    def __getitems__(self, indices) -> GatheredBatch:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return GatheredBatch(self.images.index_select(0, idx), self.labels.index_select(0, idx))


class ImageFileDataset(Dataset, abc.ABC):
    """Base class of datasets whose samples are image files named by a list.

    Subclasses set ``how_to_get`` (where the dataset is obtained, for error messages) and
    implement :meth:`list_samples` -> ``(classes, relative paths, labels)``. Their splits,
    official image counts and number of classes are the catalog's
    (:mod:`mixbench.data.catalog`, by class name); a class outside it takes any split name
    and checks no counts.

    Items are ``{"inputs": uint8 (3, H, W), "data_samples": int64 label}``.

    Args:
        root: the dataset folder (or its parent, when the folder has its official name).
        split: one of the catalog's splits of the dataset (any name outside the catalog).
        pipeline: list of transform configs (see module docstring); the output of the last
            step must have the same size for every image. None: images as decoded.
        in_memory: decode every image once at construction and keep the uint8 tensors
            (for small-image sets such as Tiny-ImageNet, 100k x 3 x 64 x 64 = 1.2 GB).
        max_samples: keep ``max_samples`` images evenly spread over the list (quick runs).
        check_counts: raise if the split does not have its official number of images and
            classes (the catalog's).
        use_index: read the cached index written by ``tools/prepare_data.py index``.
        decode_device: None (default): decode on the CPU, per sample, in the loader
            workers. ``cuda``: decode each batch of JPEGs at once on the GPU (nvJPEG) and run
            the pipeline there, in the main process: use it with ``num_workers: 0``,
            ``persistent_workers: false``, ``pin_memory: false`` and ``collate_fn: {type:
            batch_collate}``; without CUDA it is an error. ``auto``: ``cuda`` when CUDA is
            available, otherwise the CPU path (with a warning). ``in_memory`` sets decode
            once on the CPU whatever this says.
    """

    folder_names: tuple = ()
    how_to_get = ""
    crop_bottom = 0  # pixels removed from the bottom of every image after decoding

    def __init__(
        self,
        root: str = "data",
        split: str = "train",
        pipeline=None,
        in_memory: bool = False,
        max_samples: int | None = None,
        check_counts: bool = False,
        use_index: bool = True,
        decode_device: str | None = None,
    ):
        self.split = check_split(type(self), split)
        device = resolve_decode_device(decode_device)  # checked even when in_memory
        self.decode_device = None if in_memory else device  # in memory: decoded once, CPU
        self._cache: list | None = None
        self.root = self.resolve_root(Path(root))
        listing = self.read_index() if use_index else None
        classes, paths, labels = listing if listing is not None else self.list_samples()
        self.index_used = listing is not None
        self.classes = list(classes)
        self.class_names = list(getattr(self, "class_names", None) or self.classes)
        self.metainfo = {"classes": self.classes, "num_classes": len(self.classes)}
        labels = np.asarray(labels, dtype=np.int64)
        if not len(paths):
            raise DatasetError(f"{self.root}: the {self.split!r} split lists no images. {self.how_to_get}")
        if len(paths) != len(labels):
            raise DatasetError(f"{self.root}: {len(paths)} image paths but {len(labels)} labels")
        check_labels(torch.from_numpy(labels), len(self.classes), str(self.root))
        if check_counts:
            self.check_count(len(paths), len(self.classes))
        if max_samples is not None:
            if max_samples <= 0:
                raise ValueError(f"max_samples must be positive, got {max_samples}")
            n = min(max_samples, len(paths))
            keep = np.unique(np.linspace(0, len(paths) - 1, n).round().astype(int))
            paths, labels = [paths[i] for i in keep], labels[keep]
        # Fixed-width byte strings after the common folder prefix: one buffer that forked
        # loader workers share without copy-on-read (a Python list of a million str objects
        # would be copied page by page), 45 bytes a path smaller for Places205.
        prefix = os.path.commonprefix(list(paths))
        self._prefix = prefix[: prefix.rfind("/") + 1]
        self._paths = np.array([p[len(self._prefix) :].encode() for p in paths], dtype=np.bytes_)
        self.labels = torch.from_numpy(labels)
        self.pipeline = build_pipeline(pipeline)
        if in_memory:
            self._cache = self._decode_all()

    # -- to implement -------------------------------------------------------------------
    @abc.abstractmethod
    def list_samples(self) -> tuple[list[str], list[str], list[int]]:
        """Return ``(classes, paths relative to root, labels)`` from the official files; may
        set ``self.class_names`` (readable names, when ``classes`` are ids)."""

    def index_options(self) -> dict:
        """Constructor options that change the listing (part of the cached index's key)."""
        return {}

    # -- root, counts, index ------------------------------------------------------------
    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        for name in cls.folder_names:
            if (root / name).is_dir():
                return root / name
        return root

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_count(self, n: int, num_classes: int) -> None:
        """``n`` images and ``num_classes`` classes must be the catalog's numbers for this
        split (and options); raise :class:`DatasetError` otherwise."""
        entry = entry_of(type(self))
        if entry is None:
            return
        expected = entry.counts.get(self.split)
        if expected is not None and n != expected:
            raise DatasetError(
                f"{self.root}: the {self.split!r} split lists {n} images, the official "
                f"{type(self).__name__} {self.split!r} split has {expected}. The copy is "
                f"incomplete or a different version. {self.how_to_get}"
            )
        expected = entry.classes_with(self.index_options())
        if expected is not None and num_classes != expected:
            raise DatasetError(
                f"{self.root}: the {self.split!r} split lists {num_classes} classes, the official "
                f"{entry.title} has {expected}. The copy is incomplete or a different version. "
                f"{self.how_to_get}"
            )

    def index_key(self) -> dict:
        return {"dataset": type(self).__name__, "split": self.split, **self.index_options()}

    def index_path(self) -> Path:
        key = json.dumps(self.index_key(), sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        return self.root / INDEX_DIR / f"{type(self).__name__}_{self.split}_{digest}.json"

    def read_index(self):
        path = self.index_path()
        if not path.is_file():
            return None
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise DatasetError(
                f"{path}: unreadable index ({e}); delete it or rewrite it with `tools/prepare_data.py index`"
            ) from e
        if (
            data.get("format") != INDEX_FORMAT
            or data.get("version") != INDEX_VERSION
            or data.get("key") != self.index_key()
        ):
            return None
        if data.get("class_names"):
            self.class_names = data["class_names"]
        return data["classes"], data["paths"], data["labels"]

    def write_index(self) -> Path:
        """Write the current listing (the whole split, before ``max_samples``) to the index."""
        classes, paths, labels = self.list_samples()
        path = self.index_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "key": self.index_key(),
            "classes": list(classes),
            "class_names": getattr(self, "class_names", None),
            "paths": list(paths),
            "labels": [int(v) for v in labels],
        }
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        return path

    # -- samples -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._paths)

    def path(self, idx: int) -> Path:
        return self.root / (self._prefix + self._paths[idx].decode())

    def missing_files(self) -> list[Path]:
        """Listed images that do not exist on disk."""
        return [p for p in map(self.path, range(len(self))) if not p.is_file()]

    def load_image(self, idx: int) -> Tensor:
        """The decoded uint8 (3, H, W) image, before the pipeline."""
        if self._cache is not None:
            return self._cache[idx]
        return self.crop(idx, decode_file(self.path(idx)))

    def crop(self, idx: int, img: Tensor) -> Tensor:
        """Remove the ``crop_bottom`` banner from image ``idx``."""
        if self.crop_bottom:
            if img.shape[1] <= self.crop_bottom:
                raise DatasetError(
                    f"{self.path(idx)}: {img.shape[1]} px high, cannot remove "
                    f"the {self.crop_bottom}-px banner"
                )
            img = img[:, : -self.crop_bottom]
        return img

    def _decode_all(self):
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            images = list(pool.map(self.load_image, range(len(self))))
        if images and all(im.shape == images[0].shape for im in images):
            return torch.stack(images)  # one buffer, shared by loader workers
        return images

    def __getitem__(self, idx: int) -> dict:
        if self.decode_device is not None:
            return self.__getitems__([idx])[0]
        img = self.load_image(idx)
        if self.pipeline is not None:
            img = self.pipeline(img)
        return {"inputs": img, "data_samples": self.labels[idx]}

    def __getitems__(self, indices):
        """A batch: per-sample items, or with ``decode_device`` a :class:`GatheredBatch`
        decoded and transformed on that device (a list when sizes differ)."""
        if self.decode_device is None:
            return [self[i] for i in indices]
        if get_worker_info() is not None:
            raise RuntimeError(
                f"{type(self).__name__}: decode_device={str(self.decode_device)!r} "
                "decodes in the main process; set the loader's num_workers: 0 "
                "(and persistent_workers: false, pin_memory: false)"
            )
        indices = list(indices)
        images = decode_batch([self.path(i) for i in indices], self.decode_device)
        images = [self.crop(i, img) for i, img in zip(indices, images)]
        if self.pipeline is not None:
            images = [self.pipeline(img) for img in images]
        labels = self.labels[indices].to(self.decode_device)
        if all(img.shape == images[0].shape for img in images):
            return GatheredBatch(torch.stack(images), labels)
        return [{"inputs": img, "data_samples": lab} for img, lab in zip(images, labels)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"num_samples={len(self)}, num_classes={self.num_classes})"
        )


@DATASETS.register_module()
class TransformedDataset(Dataset):
    """Any dataset with a per-sample ``pipeline`` applied to its images, e.g. CIFAR-100
    upsampled to 224 px for ViTs::

        dataset:
          type: TransformedDataset
          dataset: {type: CIFAR100, root: data/cifar100, split: train}
          pipeline: [{type: RandomResizedCrop, size: 224, scale: [0.8, 1.0]}]
    """

    def __init__(self, dataset, pipeline):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.pipeline = build_pipeline(pipeline)
        self.classes = list(self.dataset.classes)
        self.metainfo = {"classes": self.classes, "num_classes": len(self.classes)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        item = dict(self.dataset[idx])
        if self.pipeline is not None:
            item["inputs"] = self.pipeline(item["inputs"])
        return item
