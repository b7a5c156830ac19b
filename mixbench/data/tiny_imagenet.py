"""Tiny-ImageNet-200 (Le & Yang, 2015; CS231n): 64x64 images of 200 ImageNet classes,
500 train / 50 val images per class, read from the official ``tiny-imagenet-200.zip``."""

from __future__ import annotations

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import DatasetError, class_folder_samples, read_text_lines, split_columns

HOW_TO_GET = (
    "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and extract it, "
    "so that tiny-imagenet-200/{wnids.txt, words.txt, train/, val/} lie under root."
)


@DATASETS.register_module()
class TinyImageNet(ImageFileDataset):
    """Tiny-ImageNet-200 in its official layout::

        tiny-imagenet-200/
          wnids.txt                 200 WordNet ids, one a line
          words.txt                 '<wnid>\\t<names>' for all of WordNet (class names)
          train/<wnid>/images/<wnid>_<k>.JPEG       500 per class
          val/images/val_<k>.JPEG   10,000 images
          val/val_annotations.txt   '<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>'

    ``test/`` has no public labels, so the benchmark evaluates on ``val`` (as OpenMixup and
    the papers do). Classes are the sorted WordNet ids (``classes``); ``class_names`` holds
    their words. Images are 64x64: ``in_memory: true`` keeps all of them decoded (1.2 GB
    for train).
    """

    folder_names = ("tiny-imagenet-200",)
    how_to_get = HOW_TO_GET

    def list_samples(self):
        wnids = read_text_lines(self.root / "wnids.txt", "the 200 WordNet ids, one a line", HOW_TO_GET)
        classes = sorted(wnids)
        words_path = self.root / "words.txt"
        words = dict(
            split_columns(
                words_path,
                read_text_lines(words_path, "'<wnid>\\t<class names>' lines", HOW_TO_GET),
                2,
                "'<wnid>\\t<class names>'",
                sep="\t",
            )
        )
        self.class_names = [words.get(w, w) for w in classes]
        if self.split == "train":
            paths, labels = class_folder_samples(self.root, "train", classes)
            return classes, paths, labels
        ann = self.root / "val" / "val_annotations.txt"
        rows = split_columns(
            ann,
            read_text_lines(ann, "'<file>\\t<wnid>\\t<box>' lines for the 10,000 val images", HOW_TO_GET),
            6,
            "'<file name>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>'",
            sep="\t",
        )
        label_of = {w: i for i, w in enumerate(classes)}
        paths, labels = [], []
        for name, wnid, *_box in rows:
            if wnid not in label_of:
                raise DatasetError(f"{ann}: {name} is labelled {wnid!r}, which wnids.txt does not list")
            paths.append(f"val/images/{name}")
            labels.append(label_of[wnid])
        return classes, paths, labels
