"""ImageNet-1k (ILSVRC-2012; Russakovsky et al., IJCV 2015) and ImageNet-100 (the 100-class
subset of Tian et al., "Contrastive Multiview Coding", ECCV 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mixbench.registry import DATASETS

from .base import ImageFileDataset
from .io import (
    DatasetError,
    class_folder_samples,
    list_class_folders,
    list_image_files,
    missing_file_error,
    parse_int,
    read_mat_struct,
    read_text_lines,
    split_columns,
)

HOW_TO_GET = (
    "Download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (and "
    "ILSVRC2012_devkit_t12.tar.gz) from https://image-net.org/download.php (free "
    "for non-commercial research after registration); extract train/ as one folder "
    "per WordNet id, and val/ either into class folders or flat with a ground-truth "
    "list (meta/val.txt, or the devkit's data/ILSVRC2012_validation_ground_truth.txt)."
)
DEVKIT = "ILSVRC2012_devkit_t12/data"
IMAGENET100_CLASSES = Path(__file__).with_name("imagenet100_classes.txt")


def read_class_list(path: Path) -> list[str]:
    """WordNet ids, one a line; ``#`` starts a comment."""
    lines = read_text_lines(path, "WordNet ids (n01234567), one a line", HOW_TO_GET)
    return [ln for ln in lines if not ln.startswith("#")]


@DATASETS.register_module()
class ImageNet(ImageFileDataset):
    """ImageNet-1k, 1000 classes, 1,281,167 train / 50,000 val images::

        train/<wnid>/<wnid>_<k>.JPEG
        val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG        (class folders), or
        val/ILSVRC2012_val_<8 digits>.JPEG               (flat) + one ground-truth list:
            meta/val.txt  '<file name> <label>'           (OpenMixup / mmpretrain), or
            ILSVRC2012_devkit_t12/data/{ILSVRC2012_validation_ground_truth.txt, meta.mat}
        meta/train.txt '<wnid>/<file name> <label>'      (optional, instead of listing train/)

    Classes are the sorted WordNet ids (labels as torchvision's ImageFolder and the list
    files number them); ``class_names`` are the devkit's words when ``meta.mat`` is present.

    Args:
        class_list: keep only these WordNet ids (a list, or a file with one id a line),
            relabelled 0..K-1 in sorted order. None: all classes.
    """

    folder_names = ("imagenet", "ImageNet", "ILSVRC2012")
    how_to_get = HOW_TO_GET

    def __init__(
        self,
        root: str = "data/imagenet",
        split: str = "train",
        class_list: None | str | Sequence[str] = None,
        **kwargs,
    ):
        if isinstance(class_list, (str, Path)):
            class_list = read_class_list(Path(class_list))
        self.class_list = sorted(class_list) if class_list is not None else None
        super().__init__(root, split, **kwargs)

    def index_options(self) -> dict:
        return {"class_list": self.class_list}

    # all 1000 WordNet ids, sorted: from the class folders, else from the devkit
    def all_wnids(self) -> list[str]:
        for sub in ("train", "val"):
            folder = self.root / sub
            if folder.is_dir():
                wnids = list_class_folders(folder)
                if wnids:
                    return wnids
        synsets = self.devkit_synsets()
        if synsets is None:
            raise missing_file_error(
                self.root / "train",
                "one folder of images per WordNet id (n01440764/ ...), "
                f"or the devkit's {DEVKIT}/meta.mat to name the classes",
                HOW_TO_GET,
            )
        return sorted(synsets)

    def devkit_synsets(self) -> dict | None:
        """{wnid: (ILSVRC2012_ID, words)} of the 1000 leaf classes, or None without devkit."""
        path = self.root / DEVKIT / "meta.mat"
        if not path.is_file():
            return None
        s = read_mat_struct(
            path, "synsets", ("ILSVRC2012_ID", "WNID", "words"), "the ILSVRC-2012 synsets struct", HOW_TO_GET
        )
        return {
            str(w): (int(i), str(words))
            for i, w, words in zip(s["ILSVRC2012_ID"], s["WNID"], s["words"])
            if 1 <= int(i) <= 1000
        }

    def list_samples(self):
        wnids = self.all_wnids()
        paths, sample_wnids = self._list_split(wnids)
        classes = self.class_list or wnids
        unknown = sorted(set(classes) - set(wnids))
        if unknown:
            raise DatasetError(
                f"{self.root}: class_list names {len(unknown)} WordNet ids "
                f"that this ImageNet copy lacks, e.g. {unknown[:3]}"
            )
        label_of = {w: i for i, w in enumerate(classes)}
        keep = [i for i, w in enumerate(sample_wnids) if w in label_of]
        synsets = self.devkit_synsets()
        if synsets is not None:
            self.class_names = [synsets[w][1] if w in synsets else w for w in classes]
        return classes, [paths[i] for i in keep], [label_of[sample_wnids[i]] for i in keep]

    def _list_split(self, wnids: list[str]) -> tuple[list[str], list[str]]:
        """(paths, WordNet id of each path) for the split."""
        list_file = self.root / "meta" / f"{self.split}.txt"
        folder = self.root / self.split
        if list_file.is_file():
            return self._from_list_file(list_file, wnids)
        if not folder.is_dir():
            raise missing_file_error(
                folder, f"the ImageNet {self.split} images (or the list file {list_file})", HOW_TO_GET
            )
        names = list_class_folders(folder)
        if names:
            paths, labels = class_folder_samples(self.root, self.split, names)
            return paths, [names[i] for i in labels]
        if self.split == "val":
            return self._flat_val_from_devkit(folder)
        raise DatasetError(f"{folder}: no class folders; expected train/<wnid>/*.JPEG. {HOW_TO_GET}")

    def _from_list_file(self, path: Path, wnids: list[str]):
        rows = split_columns(
            path,
            read_text_lines(path, "'<image path> <label>' lines", HOW_TO_GET),
            2,
            "'<image path> <integer label>'",
            from_right=True,
        )
        paths, sample_wnids = [], []
        for rel, value in rows:
            label = parse_int(path, value, f"the label of {rel}")
            if not 0 <= label < len(wnids):
                raise DatasetError(f"{path}: label {label} of {rel} is outside 0..{len(wnids) - 1}")
            paths.append(f"{self.split}/{rel}")
            sample_wnids.append(wnids[label])
        return paths, sample_wnids

    def _flat_val_from_devkit(self, folder: Path):
        gt = self.root / DEVKIT / "ILSVRC2012_validation_ground_truth.txt"
        if not gt.is_file():
            raise missing_file_error(
                gt,
                "the val ground truth for the flat val/ folder: one ILSVRC2012_ID (1..1000) "
                f"a line, or a list file {self.root / 'meta' / 'val.txt'}",
                HOW_TO_GET,
            )
        synsets = self.devkit_synsets()
        if synsets is None:
            raise missing_file_error(
                self.root / DEVKIT / "meta.mat",
                "the devkit's synsets (ILSVRC2012_ID -> WordNet id)",
                HOW_TO_GET,
            )
        wnid_of_id = {i: w for w, (i, _) in synsets.items()}
        ids = [parse_int(gt, v, "an ILSVRC2012_ID") for v in read_text_lines(gt, "", HOW_TO_GET)]
        files = set(list_image_files(folder))
        paths, sample_wnids = [], []
        for k, cid in enumerate(ids, 1):
            name = f"ILSVRC2012_val_{k:08d}.JPEG"
            if cid not in wnid_of_id:
                raise DatasetError(f"{gt}, line {k}: ILSVRC2012_ID {cid} is not one of the 1000 classes")
            if name not in files:
                raise missing_file_error(folder / name, f"validation image {k} of {len(ids)}", HOW_TO_GET)
            paths.append(f"val/{name}")
            sample_wnids.append(wnid_of_id[cid])
        return paths, sample_wnids


@DATASETS.register_module()
class ImageNet100(ImageNet):
    """ImageNet-100: the ImageNet-1k layout restricted to the 100 classes listed in
    ``mixbench/data/imagenet100_classes.txt`` (the list of Tian, Krishnan & Isola, CMC,
    ECCV 2020: https://github.com/HobbitLong/CMC/blob/master/imagenet100.txt), 50 val
    images per class. Labels 0..99 follow the sorted WordNet ids."""

    def __init__(
        self,
        root: str = "data/imagenet",
        split: str = "train",
        class_list: str | Sequence[str] = str(IMAGENET100_CLASSES),
        **kwargs,
    ):
        super().__init__(root, split, class_list=class_list, **kwargs)
