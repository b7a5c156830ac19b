"""Reading dataset files: the error raised when one is missing or malformed, image decoding
(CPU, or batched on the GPU with nvJPEG), list and annotation files, folders of images and
MATLAB ``.mat`` structs. The dataset classes (:mod:`mixbench.data.base`) build on these.

Decoding uses ``torchvision.io.decode_image`` (libjpeg-turbo / libpng, RGB output; greyscale
and CMYK JPEGs become RGB). With ``decode_device: cuda`` a dataset decodes each batch of
JPEGs at once on the GPU (``torchvision.io.decode_jpeg(..., device="cuda")``, nvJPEG) in
the main process; see :class:`mixbench.data.base.ImageFileDataset`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetError(FileNotFoundError):
    """A dataset file is missing or malformed. The message names the file, what was
    expected there, and where the dataset is obtained."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def missing_file_error(path: Path | str, expected: str, how_to_get: str) -> DatasetError:
    return DatasetError(f"{path} not found: expected {expected}. {how_to_get}")


# -- images -----------------------------------------------------------------------------
def read_bytes(path: Path | str) -> Tensor:
    """The file's bytes as a uint8 tensor; a clear error if it is missing."""
    try:
        with open(path, "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    except FileNotFoundError as e:
        raise DatasetError(
            f"{path} not found: the dataset's list names this image but the "
            "file is missing (incomplete download or wrong root?)."
        ) from e


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


def resolve_decode_device(decode_device: str | None) -> torch.device | None:
    """The device on which a dataset decodes JPEGs: None = on the CPU, per sample.

    ``cuda`` (or ``cuda:N``) requires CUDA and is an error without it; ``auto`` is CUDA when
    available and otherwise the CPU, with a warning saying so."""
    if decode_device in (None, "cpu"):
        return None
    if decode_device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn(
            "decode_device='auto': CUDA is not available, JPEGs are decoded on the "
            "CPU (per sample, in the loader workers)",
            stacklevel=3,
        )
        return None
    try:
        device = torch.device(decode_device)
    except RuntimeError:
        device = None
    if device is None or device.type != "cuda":
        raise ValueError(
            f"decode_device must be None, 'cpu', 'cuda', 'cuda:N' or 'auto', got {decode_device!r}"
        )
    if not torch.cuda.is_available():
        raise ValueError(
            f"decode_device={decode_device!r} but CUDA is not available: remove it "
            "(decode on the CPU) or use decode_device: auto to fall back to the CPU"
        )
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
    return [img if img is not None else decode_bytes(d, p).to(device) for img, d, p in zip(out, data, paths)]


def decode_one_jpeg(data: Tensor, path: Path, device: torch.device) -> Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return decode_bytes(data, path).to(device)


# -- list and annotation files -------------------------------------------------------
def read_text_lines(path: Path, expected: str, how_to_get: str) -> list[str]:
    """Non-empty, stripped lines of a text file; a missing file names what it should hold."""
    if not path.is_file():
        raise missing_file_error(path, expected, how_to_get)
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def split_columns(
    path: Path,
    lines: Sequence[str],
    ncols: int,
    expected: str,
    sep: str | None = None,
    from_right: bool = False,
) -> list[list[str]]:
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


def read_mat_struct(path: Path, key: str, fields: Sequence[str], expected: str, how_to_get: str) -> dict:
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
        raise DatasetError(
            f"{path}: no {key!r} variable (found {sorted(k for k in mat if not k.startswith('__'))}); "
            f"expected {expected}. {how_to_get}"
        )
    arr = np.atleast_1d(mat[key])
    if arr.dtype.names is None:  # a plain cell array / vector, e.g. cars_meta's class_names
        return {key: [v.item() if isinstance(v, np.ndarray) else v for v in arr.ravel()]}
    missing = [f for f in fields if f not in arr.dtype.names]
    if missing:
        raise DatasetError(f"{path}: {key!r} lacks the field(s) {missing}; expected {expected}")
    return {
        f: [v.item() if isinstance(v, np.ndarray) and v.size == 1 else v for v in arr[f].ravel()]
        for f in fields
    }


# -- folders of images ---------------------------------------------------------------
def list_image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively), as sorted paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        found.extend(
            name if rel == "." else f"{rel}/{name}"
            for name in filenames
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
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
