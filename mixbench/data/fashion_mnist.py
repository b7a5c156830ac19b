"""Fashion-MNIST (Xiao et al., 2017) read from its IDX files."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from mixbench.registry import DATASETS

from .base import InMemoryDataset, check_split
from .catalog import entry_of
from .io import DatasetError, missing_file_error

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
HOW_TO_GET = (
    "On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (installs the "
    f"files under {DEFAULT_ROOT}); or download the four *-ubyte.gz files from "
    "https://github.com/zalandoresearch/fashion-mnist and pass root=<folder>."
)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a NumPy array. A truncated or
    corrupt gzip file (bad CRC, cut short) is a :class:`DatasetError` naming the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DatasetError(
            f"{path}: corrupt or truncated gzip file ({type(e).__name__}: {e}); "
            f"download it again. {HOW_TO_GET}"
        ) from e
    if len(data) < 4:
        raise DatasetError(f"{path}: too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _DTYPES:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(
            f"{path}: header says {dims} = {int(np.prod(dims))} values, file holds {body.size} (truncated?)"
        )
    return body.reshape(dims)


def find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise missing_file_error(root / (stem + ".gz"), f"the Fashion-MNIST IDX file {stem}[.gz]", HOW_TO_GET)


@DATASETS.register_module()
class FashionMNIST(InMemoryDataset):
    """Fashion-MNIST: 28x28 greyscale clothing images, 10 classes, 60,000 train / 10,000 test.

    Args:
        root: folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
            (default: Debian's ``dataset-fashion-mnist`` location).
        split: ``train`` or ``test``.
        max_samples: keep the first N images only.
    """

    def __init__(self, root: str = DEFAULT_ROOT, split: str = "train", max_samples=None, device=None):
        check_split(type(self), split)
        root = Path(root)
        if not root.is_dir():
            raise missing_file_error(root, "a folder with the Fashion-MNIST IDX files", HOW_TO_GET)
        img_file, lbl_file = (find_idx(root, s) for s in FILES[split])
        images = read_idx(img_file)
        labels = read_idx(lbl_file)
        _, h, w = entry_of(type(self)).image_shape
        if images.shape[1:] != (h, w) or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"{img_file} / {lbl_file}: expected N x {h} x {w} images and N labels, "
                f"got {images.shape} and {labels.shape}"
            )
        self.source = str(lbl_file)
        super().__init__(
            torch.from_numpy(images.copy())[:, None],
            torch.from_numpy(labels.astype(np.int64)),
            CLASSES,
            max_samples,
            device,
        )
