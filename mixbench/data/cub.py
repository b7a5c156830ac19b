"""CUB-200-2011 (Wah et al., Caltech-UCSD Birds-200-2011, CNS-TR-2011-001): 11,788 images
of 200 bird species, 5,994 train / 5,794 test by the official split."""

from __future__ import annotations

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import DatasetError, parse_int, read_text_lines, split_columns

HOW_TO_GET = (
    "Download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ "
    "(data.caltech.edu/records/65de6-vp158) and extract it so that CUB_200_2011/"
    "{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/} "
    "lie under root."
)


def _id_table(path, expected: str) -> dict[int, str]:
    """'<id> <value>' lines -> {id: value}."""
    rows = split_columns(path, read_text_lines(path, expected, HOW_TO_GET), 2, expected)
    return {parse_int(path, i, "the id"): v for i, v in rows}


@DATASETS.register_module()
class CUB200(ImageFileDataset):
    """CUB-200-2011 in its official layout::

        CUB_200_2011/
          classes.txt             '<class id> <class folder name>'   (ids 1..200)
          images.txt              '<image id> <relative path>'
          image_class_labels.txt  '<image id> <class id>'
          train_test_split.txt    '<image id> <1 = train, 0 = test>'
          images/<class folder>/<image>.jpg

    ``classes`` are the folder names (``001.Black_footed_Albatross``); ``class_names`` the
    readable species (``Black footed Albatross``). Labels are class id - 1.
    """

    folder_names = ("CUB_200_2011",)
    how_to_get = HOW_TO_GET

    def list_samples(self):
        r = self.root
        class_table = _id_table(r / "classes.txt", "'<class id> <class name>' lines")
        images = _id_table(r / "images.txt", "'<image id> <relative image path>' lines")
        labels = _id_table(r / "image_class_labels.txt", "'<image id> <class id>' lines")
        is_train = _id_table(r / "train_test_split.txt", "'<image id> <is_training_image>' lines")
        class_ids = sorted(class_table)
        if class_ids != list(range(1, len(class_ids) + 1)):
            raise DatasetError(f"{r / 'classes.txt'}: class ids should run 1..{len(class_ids)}")
        classes = [class_table[i] for i in class_ids]
        self.class_names = [c.split(".", 1)[-1].replace("_", " ") for c in classes]
        want = "1" if self.split == "train" else "0"
        paths, ys = [], []
        for image_id in sorted(images):
            for table, name in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
                if image_id not in table:
                    raise DatasetError(
                        f"{r / name}: no entry for image id {image_id} "
                        f"({images[image_id]}) listed in images.txt"
                    )
            if is_train[image_id] == want:
                paths.append(f"images/{images[image_id]}")
                ys.append(parse_int(r / "image_class_labels.txt", labels[image_id], "the class id") - 1)
        return classes, paths, ys
