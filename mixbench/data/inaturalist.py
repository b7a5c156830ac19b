"""iNaturalist 2017 and 2018 (Van Horn et al., "The iNaturalist Species Classification and
Detection Dataset", CVPR 2018), read from the official COCO-style JSON files."""

from __future__ import annotations

import json

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import DatasetError, missing_file_error

HOW_TO_GET = (
    "Download the iNaturalist {year} competition images and train/val annotations "
    "from https://github.com/visipedia/inat_comp/tree/master/{year} and extract "
    "them so that train{year}.json, val{year}.json and the image folder "
    "({images}/) lie under root."
)


class _INaturalist(ImageFileDataset):
    year = 0
    image_folder = ""

    @property
    def how_to_get(self) -> str:
        return HOW_TO_GET.format(year=self.year, images=self.image_folder)

    def list_samples(self):
        path = self.root / f"{self.split}{self.year}.json"
        if not path.is_file():
            raise missing_file_error(
                path, "the COCO-style annotations (images, annotations, categories)", self.how_to_get
            )
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except ValueError as e:
            raise DatasetError(f"{path}: not valid JSON ({e}). {self.how_to_get}") from e
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            raise DatasetError(
                f"{path}: no {missing} key(s); expected COCO-style 'images', "
                f"'annotations' and 'categories' lists. {self.how_to_get}"
            )
        categories = data["categories"]
        names_file = self.root / "categories.json"  # iNat2018's separate taxonomy file
        if names_file.is_file():
            with open(names_file, encoding="utf-8") as f:
                categories = json.load(f)
        categories = sorted(categories, key=lambda c: c["id"])
        label_of = {c["id"]: i for i, c in enumerate(categories)}
        classes = [c["name"] for c in categories]
        category_of = {a["image_id"]: a["category_id"] for a in data["annotations"]}
        paths, labels = [], []
        for im in data["images"]:
            cat = category_of.get(im["id"])
            if cat not in label_of:
                raise DatasetError(
                    f"{path}: image {im['id']} ({im['file_name']}) has no annotation with a listed category"
                )
            paths.append(im["file_name"])
            labels.append(label_of[cat])
        return classes, paths, labels


@DATASETS.register_module()
class INaturalist2017(_INaturalist):
    """iNaturalist 2017: 5,089 species, 579,184 train / 95,986 val images; ``train2017.json``,
    ``val2017.json``, images under ``train_val_images/<supercategory>/<species>/``. Labels
    follow the category ids (0..5088); ``classes`` are the species names."""

    year = 2017
    image_folder = "train_val_images"
    folder_names = ("inat2017", "iNat2017")


@DATASETS.register_module()
class INaturalist2018(_INaturalist):
    """iNaturalist 2018: 8,142 species, 437,513 train / 24,426 val images; ``train2018.json``,
    ``val2018.json``, images under ``train_val2018/<supercategory>/<species>/``. Labels follow
    the category ids (0..8141). Class names come from ``categories.json`` (the release's
    taxonomy file) when it lies in root, else from the annotation file's categories."""

    year = 2018
    image_folder = "train_val2018"
    folder_names = ("inat2018", "iNat2018")
