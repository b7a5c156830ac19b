"""FGVC-Aircraft 2013b (Maji et al., "Fine-Grained Visual Classification of Aircraft",
arXiv:1306.5151): 10,000 images of 100 aircraft variants (70 families, 41 manufacturers)."""

from __future__ import annotations

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import DatasetError, read_text_lines, split_columns

HOW_TO_GET = (
    "Download fgvc-aircraft-2013b.tar.gz from "
    "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ and extract it so that "
    "fgvc-aircraft-2013b/data/{images/, variants.txt, images_variant_*.txt} lie under root."
)
LEVELS = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
BANNER_PX = 20


@DATASETS.register_module()
class FGVCAircraft(ImageFileDataset):
    """FGVC-Aircraft in its official layout::

        fgvc-aircraft-2013b/data/
          images/<7-digit id>.jpg
          variants.txt, families.txt, manufacturers.txt        class names, one a line
          images_<level>_<split>.txt   '<image id> <class name>' (names may hold spaces)

    Splits: train 3,334, val 3,333, trainval 6,667 (the benchmark's training set), test
    3,333. ``level``: variant (100 classes, default), family (70) or manufacturer (41);
    labels follow the order of the class file. Every image carries a 20-pixel copyright
    banner at the bottom, which the authors ask users to remove: it is cropped after
    decoding (``crop_banner: false`` keeps it).
    """

    folder_names = ("fgvc-aircraft-2013b",)
    how_to_get = HOW_TO_GET

    def __init__(
        self,
        root: str = "data/fgvc-aircraft-2013b",
        split: str = "trainval",
        level: str = "variant",
        crop_banner: bool = True,
        **kwargs,
    ):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
        self.level = level
        self.crop_bottom = BANNER_PX if crop_banner else 0
        super().__init__(root, split, **kwargs)

    def index_options(self) -> dict:
        return {"level": self.level}

    def list_samples(self):
        data = self.root / "data"
        classes = read_text_lines(
            data / LEVELS[self.level], f"the {self.level} names, one a line", HOW_TO_GET
        )
        label_of = {c: i for i, c in enumerate(classes)}
        ann = data / f"images_{self.level}_{self.split}.txt"
        rows = split_columns(
            ann,
            read_text_lines(ann, f"'<image id> <{self.level}>' lines", HOW_TO_GET),
            2,
            f"'<image id> <{self.level}>'",
        )
        paths, labels = [], []
        for image_id, name in rows:
            if name not in label_of:
                raise DatasetError(
                    f"{ann}: image {image_id} is labelled {name!r}, which {LEVELS[self.level]} does not list"
                )
            paths.append(f"data/images/{image_id}.jpg")
            labels.append(label_of[name])
        return classes, paths, labels
