"""Stanford Cars (Krause et al., "3D Object Representations for Fine-Grained
Categorization", 3dRR 2013): 16,185 images of 196 car models, 8,144 train / 8,041 test."""

from __future__ import annotations

from pathlib import Path

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import DatasetError, missing_file_error, read_mat_struct

HOW_TO_GET = (
    "The original site (ai.stanford.edu/~jkrause/cars/car_dataset.html) is offline; "
    "obtain cars_train.tgz, cars_test.tgz, car_devkit.tgz and "
    "cars_test_annos_withlabels.mat from a mirror of the original files, extract "
    "them so that devkit/, cars_train/ and cars_test/ lie under root, and put "
    "cars_test_annos_withlabels.mat in root or in devkit/."
)
ANNO_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


@DATASETS.register_module()
class StanfordCars(ImageFileDataset):
    """Stanford Cars in its devkit layout::

        devkit/cars_meta.mat                  class_names (196 model names)
        devkit/cars_train_annos.mat           annotations: bbox_x1..bbox_y2, class (1..196), fname
        cars_test_annos_withlabels.mat        the same for the test images (root or devkit/)
        cars_train/<5 digits>.jpg, cars_test/<5 digits>.jpg

    Labels are class - 1; classes are the model names of ``cars_meta.mat``. Whole images are
    used (bounding boxes are not cropped), as in the mixup benchmarks.
    """

    folder_names = ("stanford_cars", "StanfordCars")
    how_to_get = HOW_TO_GET

    def annotation_file(self) -> Path:
        if self.split == "train":
            return self.root / "devkit" / "cars_train_annos.mat"
        for cand in (
            self.root / "cars_test_annos_withlabels.mat",
            self.root / "devkit" / "cars_test_annos_withlabels.mat",
        ):
            if cand.is_file():
                return cand
        raise missing_file_error(
            self.root / "cars_test_annos_withlabels.mat",
            "the labelled test annotations (the devkit's cars_test_annos.mat has no labels)",
            HOW_TO_GET,
        )

    def list_samples(self):
        meta = read_mat_struct(
            self.root / "devkit" / "cars_meta.mat", "class_names", (), "the 196 class names", HOW_TO_GET
        )
        classes = [str(c) for c in meta["class_names"]]
        path = self.annotation_file()
        ann = read_mat_struct(
            path,
            "annotations",
            ANNO_FIELDS,
            "one record per image with bbox_x1..bbox_y2, class and fname",
            HOW_TO_GET,
        )
        folder = "cars_train" if self.split == "train" else "cars_test"
        labels = [int(c) - 1 for c in ann["class"]]
        if any(not 0 <= y < len(classes) for y in labels):
            raise DatasetError(f"{path}: class values outside 1..{len(classes)}")
        return classes, [f"{folder}/{f}" for f in ann["fname"]], labels
