"""Generic datasets for custom data: a folder of class folders, and a list file."""

from __future__ import annotations

from collections.abc import Sequence

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import (
    DatasetError,
    class_folder_samples,
    list_class_folders,
    missing_file_error,
    parse_int,
    read_text_lines,
    split_columns,
)


@DATASETS.register_module()
class ImageFolder(ImageFileDataset):
    """``root/<split>/<class>/**/<image>`` (torchvision's ImageFolder layout).

    Classes are the sorted sub-folder names of ``root/<split>`` (or ``classes`` when given,
    e.g. to keep the label order of the training split for an evaluation split); labels are
    their positions. ``split=""`` reads class folders directly under ``root``.
    """

    how_to_get = "Arrange the images as <root>/<split>/<class name>/<image file>."

    def __init__(
        self, root: str = "data", split: str = "train", classes: Sequence[str] | None = None, **kwargs
    ):
        self.given_classes = list(classes) if classes is not None else None
        super().__init__(root, split, **kwargs)

    def index_options(self) -> dict:
        return {"classes": self.given_classes}

    def list_samples(self):
        folder = self.root / self.split if self.split else self.root
        if not folder.is_dir():
            raise missing_file_error(
                folder, "a folder with one sub-folder of images per class", self.how_to_get
            )
        classes = self.given_classes or list_class_folders(folder)
        if not classes:
            raise DatasetError(f"{folder}: no class sub-folders found. {self.how_to_get}")
        paths, labels = class_folder_samples(self.root, self.split, classes)
        return classes, paths, labels


@DATASETS.register_module()
class ListFileDataset(ImageFileDataset):
    """Images named by a list file with lines ``<relative path> <integer label>`` (the
    ``meta/train.txt`` format of OpenMixup and mmpretrain).

    Args:
        ann_file: the list file, relative to ``root`` (or absolute).
        data_prefix: folder, relative to ``root``, that the listed paths are relative to.
        classes: class names in label order, or the path of a text file with one name a
            line; default ``"0" .. str(max label)``.
        split: a free-form name, used for the cached index only.
    """

    how_to_get = "Write one '<relative image path> <integer label>' line per image."

    def __init__(
        self,
        root: str = "data",
        ann_file: str = "meta/train.txt",
        data_prefix: str = "",
        classes: None | str | Sequence[str] = None,
        split: str = "train",
        **kwargs,
    ):
        self.ann_file = ann_file
        self.data_prefix = data_prefix.strip("/")
        self.given_classes = classes
        super().__init__(root, split, **kwargs)

    def index_options(self) -> dict:
        return {"ann_file": self.ann_file, "data_prefix": self.data_prefix, "classes": self.given_classes}

    def list_samples(self):
        path = self.root / self.ann_file
        lines = read_text_lines(path, "lines '<image path> <label>'", self.how_to_get)
        rows = split_columns(path, lines, 2, "'<image path> <integer label>'", from_right=True)
        prefix = self.data_prefix + "/" if self.data_prefix else ""
        paths = [prefix + p for p, _ in rows]
        labels = [parse_int(path, v, "the label") for _, v in rows]
        classes = self.given_classes
        if isinstance(classes, str):
            cpath = self.root / classes
            classes = read_text_lines(cpath, "one class name a line, in label order", self.how_to_get)
        if classes is None:
            classes = [str(i) for i in range(max(labels, default=-1) + 1)]
        return list(classes), paths, labels
