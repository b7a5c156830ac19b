"""The JPEG input pipeline: decoding, per-sample transforms, and the base class of every
dataset read from image files (ImageNet, CUB, Aircraft, ...).

Decoding uses ``torchvision.io.decode_image`` (libjpeg-turbo / libpng, RGB output; greyscale
and CMYK JPEGs become RGB). With ``decode_device: cuda`` a dataset decodes each batch of
JPEGs at once on the GPU (``torchvision.io.decode_jpeg(..., device="cuda")``, nvJPEG) in
the main process; see :class:`ImageFileDataset`. Per-sample transforms are
``torchvision.transforms.v2`` classes, registered by name in ``TRANSFORMS`` so a dataset
config lists them::

    pipeline:
      - {type: RandomResizedCrop, size: 224}
      - {type: RandomHorizontalFlip}

They act on uint8 (C, H, W) tensors and must end with a fixed size, so that the default
collate stacks a batch; conversion to float and normalisation happen on the device in the
model's data preprocessor.

A dataset lists its samples once (class names, relative paths, labels). Listing a folder of
a million files is slow, so ``tools/prepare_data.py index DATASET ROOT`` writes that list
to ``ROOT/mixbench_index/<Dataset>_<split>_<key>.json``; the dataset reads it when it is
present and its key (dataset, split and options) matches.
"""
from __future__ import annotations

import abc
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import v2

from mixbench.registry import DATASETS, TRANSFORMS

from .base import DatasetError, GatheredBatch, check_split, missing_file_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
INDEX_DIR = "mixbench_index"
INDEX_FORMAT = "mixbench-index"
INDEX_VERSION = 1

# torchvision.transforms.v2 classes available by name in pipeline configs.
V2_TRANSFORMS = ("RandomResizedCrop", "Resize", "CenterCrop", "RandomCrop", "Pad",
                 "RandomHorizontalFlip", "RandomVerticalFlip", "ColorJitter", "RandomGrayscale",
                 "RandAugment", "TrivialAugmentWide", "AutoAugment", "AugMix", "RandomErasing",
                 "RandomRotation", "RandomAffine", "GaussianBlur", "Grayscale")
for _name in V2_TRANSFORMS:
    if _name not in TRANSFORMS.module_dict:
        TRANSFORMS.register_module(name=_name, module=getattr(v2, _name))

_ENUM_ARGS = {"interpolation": v2.InterpolationMode, "policy": v2.AutoAugmentPolicy}


def build_transform(cfg: dict) -> Callable:
    """Build one transform from ``{type: Name, **kwargs}``. String values of
    ``interpolation`` ("bilinear", "bicubic", ...) and ``policy`` ("imagenet", ...) become
    torchvision's enums, so YAML can name them."""
    from mixbench.registry import check_type

    cfg = dict(cfg)
    name = cfg.pop("type", None)
    if name is None:
        raise ValueError(f"a pipeline step needs a 'type' key, e.g. {{type: Resize, size: 256}}; got {cfg}")
    check_type(TRANSFORMS, name, "dataset.pipeline")
    for key, enum in _ENUM_ARGS.items():
        if isinstance(cfg.get(key), str):
            cfg[key] = enum(cfg[key].lower())
    return TRANSFORMS.get(name)(**cfg)


def build_pipeline(steps: Optional[Sequence]) -> Optional[Callable]:
    """A ``v2.Compose`` of the configured steps (dicts or callables); None when empty."""
    if not steps:
        return None
    return v2.Compose([s if callable(s) else build_transform(s) for s in steps])


def read_bytes(path: Path | str) -> Tensor:
    """The file's bytes as a uint8 tensor; a clear error if it is missing."""
    try:
        with open(path, "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    except FileNotFoundError as e:
        raise DatasetError(f"{path} not found: the dataset's list names this image but the "
                           "file is missing (incomplete download or wrong root?).") from e


def decode_bytes(data: Tensor, path: Path | str) -> Tensor:
    """Decode an encoded image (JPEG, PNG, ...) on the CPU into uint8 RGB (3, H, W)."""
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from e


def decode_file(path: Path | str) -> Tensor:
    """Read an image file into a uint8 RGB tensor (3, H, W); a clear error if it cannot."""
    return decode_bytes(read_bytes(path), path)


JPEG_MAGIC = (0xFF, 0xD8, 0xFF)


def resolve_decode_device(decode_device: Optional[str]) -> Optional[torch.device]:
    """The device on which a dataset decodes JPEGs: None = on the CPU, per sample.

    ``cuda`` (or ``cuda:N``) requires CUDA and is an error without it; ``auto`` is CUDA when
    available and otherwise the CPU, with a warning saying so."""
    if decode_device in (None, "cpu"):
        return None
    if decode_device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn("decode_device='auto': CUDA is not available, JPEGs are decoded on the "
                      "CPU (per sample, in the loader workers)", stacklevel=3)
        return None
    try:
        device = torch.device(decode_device)
    except RuntimeError:
        device = None
    if device is None or device.type != "cuda":
        raise ValueError(f"decode_device must be None, 'cpu', 'cuda', 'cuda:N' or 'auto', got "
                         f"{decode_device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"decode_device={decode_device!r} but CUDA is not available: remove it "
                         "(decode on the CPU) or use decode_device: auto to fall back to the CPU")
    return device


def decode_batch(paths: Sequence[Path], device: torch.device) -> list[Tensor]:
    """Decode a batch of image files to uint8 RGB (3, H, W) tensors on ``device``: the
    JPEGs (recognised by their first bytes) in one ``decode_jpeg`` call (nvJPEG on CUDA),
    other formats on the CPU then moved. If the batched call fails (e.g. a CMYK JPEG, which
    nvJPEG rejects), each JPEG is retried alone, then on the CPU."""
    data = [read_bytes(p) for p in paths]
    out: list = [None] * len(data)
    jpegs = [i for i, d in enumerate(data) if tuple(d[:3].tolist()) == JPEG_MAGIC]
    if jpegs:
        try:
            decoded = decode_jpeg([data[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = [decode_one_jpeg(data[i], paths[i], device) for i in jpegs]
        for i, img in zip(jpegs, decoded):
            out[i] = img
    return [img if img is not None else decode_bytes(d, p).to(device)
            for img, d, p in zip(out, data, paths)]


def decode_one_jpeg(data: Tensor, path: Path, device: torch.device) -> Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return decode_bytes(data, path).to(device)


def read_text_lines(path: Path, expected: str, how_to_get: str) -> list[str]:
    """Non-empty, stripped lines of a text file; a missing file names what it should hold."""
    if not path.is_file():
        raise missing_file_error(path, expected, how_to_get)
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def split_columns(path: Path, lines: Sequence[str], ncols: int, expected: str,
                  sep: Optional[str] = None, from_right: bool = False) -> list[list[str]]:
    """Split each line into exactly ``ncols`` fields: the last field takes the rest of the
    line, or with ``from_right`` the first one does (for paths that may hold spaces)."""
    rows = []
    for i, line in enumerate(lines, 1):
        parts = line.rsplit(sep, ncols - 1) if from_right else line.split(sep, ncols - 1)
        if len(parts) != ncols:
            raise DatasetError(f"{path}, line {i}: expected {expected}, got {line!r}")
        rows.append([p.strip() for p in parts])
    return rows


def parse_int(path: Path, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{path}: {what} should be an integer, got {value!r}") from None


def list_image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively), as sorted paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        found.extend(name if rel == "." else f"{rel}/{name}" for name in filenames
                     if name.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


def list_class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def class_folder_samples(root: Path, subdir: str, classes: Sequence[str]):
    """Images of a ``<subdir>/<class>/**/*.jpg`` tree: ``(paths relative to root, labels)``,
    label = position of the class folder in ``classes``. Folders not in ``classes`` are
    ignored; a class without a folder is an error."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = root / subdir / name
        if not folder.is_dir():
            raise DatasetError(f"{folder} not found: expected the image folder of class {name!r}")
        prefix = f"{subdir}/{name}/" if subdir else f"{name}/"
        files = list_image_files(folder)
        paths.extend(prefix + f for f in files)
        labels.extend([label] * len(files))
    return paths, labels


class ImageFileDataset(Dataset, abc.ABC):
    """Base class of datasets whose samples are image files named by a list.

    Subclasses set ``splits``, ``official_counts`` ({split: number of images}),
    ``how_to_get`` (where the dataset is obtained, for error messages) and implement
    :meth:`list_samples` -> ``(classes, relative paths, labels)``.

    Items are ``{"inputs": uint8 (3, H, W), "data_samples": int64 label}``.

    Args:
        root: the dataset folder (or its parent, when the folder has its official name).
        split: one of ``splits``.
        pipeline: list of transform configs (see module docstring); the output of the last
            step must have the same size for every image. None: images as decoded.
        in_memory: decode every image once at construction and keep the uint8 tensors
            (for small-image sets such as Tiny-ImageNet, 100k x 3 x 64 x 64 = 1.2 GB).
        max_samples: keep ``max_samples`` images evenly spread over the list (quick runs).
        check_counts: raise if the split does not have its official number of images.
        use_index: read the cached index written by ``tools/prepare_data.py index``.
        decode_device: None (default): decode on the CPU, per sample, in the loader
            workers. ``cuda``: decode each batch of JPEGs at once on the GPU (nvJPEG) and run
            the pipeline there, in the main process: use it with ``num_workers: 0``,
            ``persistent_workers: false``, ``pin_memory: false`` and ``collate_fn: {type:
            batch_collate}``; without CUDA it is an error. ``auto``: ``cuda`` when CUDA is
            available, otherwise the CPU path (with a warning). ``in_memory`` sets decode
            once on the CPU whatever this says.
    """

    splits: Optional[tuple] = ("train", "test")  # None: any split name (generic datasets)
    official_counts: dict = {}
    folder_names: tuple = ()
    how_to_get = ""
    crop_bottom = 0  # pixels removed from the bottom of every image after decoding

    def __init__(self, root: str = "data", split: str = "train", pipeline=None,
                 in_memory: bool = False, max_samples: Optional[int] = None,
                 check_counts: bool = False, use_index: bool = True,
                 decode_device: Optional[str] = None):
        self.split = check_split(split, self.splits) if self.splits else split
        device = resolve_decode_device(decode_device)  # checked even when in_memory
        self.decode_device = None if in_memory else device  # in memory: decoded once, CPU
        self._cache: Optional[list] = None
        self.root = self.resolve_root(Path(root))
        listing = self.read_index() if use_index else None
        classes, paths, labels = listing if listing is not None else self.list_samples()
        self.index_used = listing is not None
        self.classes = list(classes)
        self.class_names = list(getattr(self, "class_names", None) or self.classes)
        self.metainfo = {"classes": self.classes, "num_classes": len(self.classes)}
        labels = np.asarray(labels, dtype=np.int64)
        if not len(paths):
            raise DatasetError(f"{self.root}: the {self.split!r} split lists no images. "
                               f"{self.how_to_get}")
        if len(paths) != len(labels):
            raise DatasetError(f"{self.root}: {len(paths)} image paths but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DatasetError(f"{self.root}: labels outside 0..{len(self.classes) - 1}")
        if check_counts:
            self.check_count(len(paths))
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
        self._prefix = prefix[:prefix.rfind("/") + 1]
        self._paths = np.array([p[len(self._prefix):].encode() for p in paths], dtype=np.bytes_)
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

    def check_count(self, n: int) -> None:
        expected = self.official_counts.get(self.split)
        if expected is not None and n != expected:
            raise DatasetError(
                f"{self.root}: the {self.split!r} split lists {n} images, the official "
                f"{type(self).__name__} {self.split!r} split has {expected}. The copy is "
                f"incomplete or a different version. {self.how_to_get}")

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
            raise DatasetError(f"{path}: unreadable index ({e}); delete it or rewrite it with "
                               "`tools/prepare_data.py index`") from e
        if (data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION
                or data.get("key") != self.index_key()):
            return None
        if data.get("class_names"):
            self.class_names = data["class_names"]
        return data["classes"], data["paths"], data["labels"]

    def write_index(self) -> Path:
        """Write the current listing (the whole split, before ``max_samples``) to the index."""
        classes, paths, labels = self.list_samples()
        path = self.index_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "key": self.index_key(),
                "classes": list(classes), "class_names": getattr(self, "class_names", None),
                "paths": list(paths),
                "labels": [int(v) for v in labels]}
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
                raise DatasetError(f"{self.path(idx)}: {img.shape[1]} px high, cannot remove "
                                   f"the {self.crop_bottom}-px banner")
            img = img[:, :-self.crop_bottom]
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
            raise RuntimeError(f"{type(self).__name__}: decode_device={str(self.decode_device)!r} "
                               "decodes in the main process; set the loader's num_workers: 0 "
                               "(and persistent_workers: false, pin_memory: false)")
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
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"num_samples={len(self)}, num_classes={self.num_classes})")


def read_mat_struct(path: Path, key: str, fields: Sequence[str], expected: str,
                    how_to_get: str) -> dict:
    """Read the struct array ``key`` of a MATLAB .mat file (scipy.io.loadmat) as
    ``{field: list of values}``; a missing file, key or field gives a clear error."""
    from scipy.io import loadmat

    if not path.is_file():
        raise missing_file_error(path, expected, how_to_get)
    try:
        mat = loadmat(str(path), squeeze_me=True)
    except Exception as e:  # noqa: BLE001 - any parse failure means a bad file
        raise DatasetError(f"{path}: not a readable MATLAB .mat file ({e}). {how_to_get}") from e
    if key not in mat:
        raise DatasetError(f"{path}: no {key!r} variable (found {sorted(k for k in mat if not k.startswith('__'))}); "
                           f"expected {expected}. {how_to_get}")
    arr = np.atleast_1d(mat[key])
    if arr.dtype.names is None:  # a plain cell array / vector, e.g. cars_meta's class_names
        return {key: [v.item() if isinstance(v, np.ndarray) else v for v in arr.ravel()]}
    missing = [f for f in fields if f not in arr.dtype.names]
    if missing:
        raise DatasetError(f"{path}: {key!r} lacks the field(s) {missing}; expected {expected}")
    return {f: [v.item() if isinstance(v, np.ndarray) and v.size == 1 else v for v in arr[f].ravel()]
            for f in fields}


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
