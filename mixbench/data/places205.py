"""Places205 (Zhou et al., "Learning Deep Features for Scene Recognition using Places
Database", NeurIPS 2014): 205 scene categories, 2,448,873 train / 20,500 val images."""

from __future__ import annotations

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import DatasetError, parse_int, read_text_lines, split_columns

HOW_TO_GET = (
    "Download imagesPlaces205_resize.tar.gz and trainvalsplit_places205.tar.gz from "
    "http://places.csail.mit.edu (data.csail.mit.edu/places/places205/) and extract "
    "both under root, giving data/vision/torralba/deeplearning/images256/ and "
    "trainvalsplit_places205/{train,val}_places205.csv."
)
IMAGE_DIR = "data/vision/torralba/deeplearning/images256"


@DATASETS.register_module()
class Places205(ImageFileDataset):
    """Places205 from its official list files::

        trainvalsplit_places205/train_places205.csv   '<letter>/<category>/<file>.jpg <label>'
        trainvalsplit_places205/val_places205.csv     (100 images per category)
        data/vision/torralba/deeplearning/images256/<letter>/<category>/<file>.jpg

    Labels 0..204 are the lists'; the class name of a label is its folder below the letter
    (``a/abbey/...`` -> ``abbey``, ``f/field/cultivated/...`` -> ``field/cultivated``).
    """

    folder_names = ("places205", "Places205")
    how_to_get = HOW_TO_GET
    num_categories = 205

    def list_samples(self):
        path = self.root / "trainvalsplit_places205" / f"{self.split}_places205.csv"
        rows = split_columns(
            path,
            read_text_lines(path, "'<relative image path> <label>' lines", HOW_TO_GET),
            2,
            "'<image path> <label>'",
            from_right=True,
        )
        names: dict[int, str] = {}
        paths, labels = [], []
        for rel, value in rows:
            label = parse_int(path, value, f"the label of {rel}")
            rel = rel.lstrip("/")  # tolerate '/a/abbey/...' as some copies of the lists have
            parts = rel.split("/")
            if len(parts) < 3:
                raise DatasetError(f"{path}: {rel!r} should read '<letter>/<category>/<file>'")
            names.setdefault(label, "/".join(parts[1:-1]))
            paths.append(f"{IMAGE_DIR}/{rel}")
            labels.append(label)
        if sorted(names) != list(range(len(names))):
            raise DatasetError(
                f"{path}: labels should run 0..K-1 without gaps, found "
                f"{len(names)} distinct labels up to {max(names, default=-1)}"
            )
        return [names[i] for i in range(len(names))], paths, labels
