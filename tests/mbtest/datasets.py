"""Miniature copies of every benchmark dataset in its EXACT official layout (same file
names, the same text/.mat/.json/pickle formats), with a few tiny images per class.

Each ``make_*`` builder writes under ``root`` and returns the dataset folder plus the
facts a test checks against (classes, which file has which label, split sizes).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.io import encode_jpeg

IMAGE_HW = (12, 10)


def write_jpeg(path: Path, value: int = 128, hw=IMAGE_HW, banner_px: int = 0) -> Path:
    """A flat-grey JPEG of ``hw`` pixels; with ``banner_px``, its bottom rows are white (the
    Aircraft copyright banner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = torch.full((3, *hw), value % 256, dtype=torch.uint8)
    if banner_px:
        img[:, -banner_px:] = 255
    path.write_bytes(encode_jpeg(img, quality=95).numpy().tobytes())
    return path


def _lines(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))
    return path


# --- CIFAR -------------------------------------------------------------------------------
def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(n: int, num_classes: int, seed: int):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, 3072), dtype=np.uint8), [int(i % num_classes) for i in range(n)]


def make_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> Path:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as the python version
    ships them (dicts with 'data' N x 3072 uint8, 'labels', 'filenames', 'batch_label')."""
    folder = Path(root) / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(
        folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}
    )
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        data, labels = _cifar_batch(n, 10, i)
        _pickle(
            folder / name,
            {
                "batch_label": f"{name} of 6",
                "labels": labels,
                "data": data,
                "filenames": [f"img_{i}_{k}.png" for k in range(n)],
            },
        )
    return folder


def make_cifar100(root: Path, n_train: int = 8, n_test: int = 4) -> Path:
    """cifar-100-python/{train, test, meta} ('fine_labels', 'coarse_labels', ...)."""
    folder = Path(root) / "cifar-100-python"
    fine = [f"fine_{i:02d}" for i in range(100)]
    _pickle(
        folder / "meta", {"fine_label_names": fine, "coarse_label_names": [f"coarse_{i}" for i in range(20)]}
    )
    for i, (name, n) in enumerate((("train", n_train), ("test", n_test))):
        data, labels = _cifar_batch(n, 100, 10 + i)
        labels = [(7 * k + i) % 100 for k in range(n)]
        _pickle(
            folder / name,
            {
                "batch_label": name,
                "fine_labels": labels,
                "coarse_labels": [y // 5 for y in labels],
                "data": data,
                "filenames": [f"{name}_{k}.png" for k in range(n)],
            },
        )
    return folder


# --- Tiny-ImageNet -----------------------------------------------------------------------
TINY_WNIDS = ["n02124075", "n01443537", "n04067472"]  # wnids.txt order (not sorted)
TINY_WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n02124075": "Egyptian cat",
    "n04067472": "reel",
    "n00001740": "entity",
}


def make_tiny_imagenet(root: Path, n_train: int = 3, n_val: int = 2, hw=(16, 16)) -> Path:
    folder = Path(root) / "tiny-imagenet-200"
    _lines(folder / "wnids.txt", TINY_WNIDS)
    _lines(folder / "words.txt", [f"{w}\t{n}" for w, n in TINY_WORDS.items()])
    for c, wnid in enumerate(TINY_WNIDS):
        boxes = []
        for k in range(n_train):
            write_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", 40 * c, hw)
            boxes.append(f"{wnid}_{k}.JPEG\t0\t0\t15\t15")
        _lines(folder / "train" / wnid / f"{wnid}_boxes.txt", boxes)
    ann, k = [], 0
    for _ in range(n_val):
        for c, wnid in enumerate(TINY_WNIDS):
            write_jpeg(folder / "val" / "images" / f"val_{k}.JPEG", 40 * c, hw)
            ann.append(f"val_{k}.JPEG\t{wnid}\t1\t2\t13\t14")
            k += 1
    _lines(folder / "val" / "val_annotations.txt", ann)
    write_jpeg(folder / "test" / "images" / "test_0.JPEG", 0, hw)
    return folder


# --- ImageNet ----------------------------------------------------------------------------
IMAGENET_WNIDS = ["n01440764", "n01443537", "n02869837", "n01749939"]  # a few real ids
IMAGENET_WORDS = {
    "n01440764": "tench, Tinca tinca",
    "n01443537": "goldfish, Carassius auratus",
    "n02869837": "bonnet, poke bonnet",
    "n01749939": "green mamba",
}


def imagenet_val_labels(n_val_per_class: int, wnids=IMAGENET_WNIDS) -> list[str]:
    """WordNet id of val image k (1-based order), interleaving the classes."""
    return [wnids[k % len(wnids)] for k in range(n_val_per_class * len(wnids))]


def _write_devkit(folder: Path, all_wnids: list[str], val_wnids: list[str]) -> None:
    from scipy.io import savemat

    data = folder / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True, exist_ok=True)
    # ILSVRC2012_IDs 1..K number the leaf classes in the devkit's own order (not sorted by
    # wnid), followed here by one non-leaf synset as in the real meta.mat.
    order = list(reversed(all_wnids))
    dtype = [
        ("ILSVRC2012_ID", "O"),
        ("WNID", "O"),
        ("words", "O"),
        ("gloss", "O"),
        ("num_children", "O"),
        ("children", "O"),
        ("wordnet_height", "O"),
        ("num_train_images", "O"),
    ]
    synsets = np.zeros((len(order) + 1, 1), dtype=dtype)
    for i, w in enumerate(order + ["n00001740"]):
        leaf = i < len(order)
        synsets[i, 0] = (
            np.array([[i + 1 if leaf else 1001]]),
            w,
            IMAGENET_WORDS.get(w, "entity"),
            "a gloss",
            np.array([[0 if leaf else 4]]),
            np.zeros((1, 0)),
            np.array([[0]]),
            np.array([[1300]]),
        )
    savemat(str(data / "meta.mat"), {"synsets": synsets})
    _lines(data / "ILSVRC2012_validation_ground_truth.txt", [order.index(w) + 1 for w in val_wnids])


def make_imagenet(
    root: Path,
    n_train: int = 2,
    n_val: int = 2,
    val_layout: str = "folders",
    meta_lists: bool = False,
    devkit: bool = False,
    folder_name="imagenet",
    all_wnids=IMAGENET_WNIDS,
) -> Path:
    """``train/<wnid>/<wnid>_<k>.JPEG``; val as ``folders`` (val/<wnid>/...), ``flat_meta``
    (flat + meta/val.txt) or ``flat_devkit`` (flat + the devkit's ground truth and meta.mat).
    ``meta_lists`` also writes meta/train.txt (and meta/val.txt)."""
    folder = Path(root) / folder_name
    wnids = sorted(all_wnids)
    train_lines = []
    for c, wnid in enumerate(wnids):
        for k in range(n_train):
            name = f"{wnid}_{k + 1}.JPEG"
            write_jpeg(folder / "train" / wnid / name, 50 * c)
            train_lines.append(f"{wnid}/{name} {c}")
    val_wnids = imagenet_val_labels(n_val, all_wnids)
    val_lines = []
    for k, wnid in enumerate(val_wnids, 1):
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        sub = f"{wnid}/" if val_layout == "folders" else ""
        write_jpeg(folder / "val" / f"{sub}{name}", 50 * wnids.index(wnid))
        val_lines.append(f"{name} {wnids.index(wnid)}")
    if meta_lists:
        _lines(folder / "meta" / "train.txt", train_lines)
    if meta_lists or val_layout == "flat_meta":
        _lines(folder / "meta" / "val.txt", val_lines)
    if devkit or val_layout == "flat_devkit":
        _write_devkit(folder, all_wnids, val_wnids)
    return folder


# --- CUB-200-2011 ------------------------------------------------------------------------
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub(root: Path, per_class: int = 4) -> Path:
    """Image ids run class by class; even ids are training images (2 of 4 per class)."""
    folder = Path(root) / "CUB_200_2011"
    _lines(folder / "classes.txt", [f"{i} {c}" for i, c in enumerate(CUB_CLASSES, 1)])
    images, labels, split = [], [], []
    image_id = 1
    for c, cls in enumerate(CUB_CLASSES, 1):
        species = cls.split(".", 1)[1]
        for k in range(per_class):
            rel = f"{cls}/{species}_{k:04d}_{1000 + image_id}.jpg"
            write_jpeg(folder / "images" / rel, 30 * c)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {int(image_id % 2 == 0)}")
            image_id += 1
    _lines(folder / "images.txt", images)
    _lines(folder / "image_class_labels.txt", labels)
    _lines(folder / "train_test_split.txt", split)
    _lines(folder / "README", ["CUB-200-2011 miniature"])
    return folder


# --- FGVC-Aircraft -----------------------------------------------------------------------
AIRCRAFT = [  # (variant, family, manufacturer) -- names with spaces and slashes, as in the release
    ("707-320", "Boeing 707", "Boeing"),
    ("A300B4", "A300", "Airbus"),
    ("DHC-1", "DHC-1", "de Havilland"),
    ("F/A-18", "F/A-18", "Boeing"),
]
AIRCRAFT_SPLITS = {"train": 1, "val": 1, "test": 2}  # images per variant
AIRCRAFT_HW = (60, 40)


def make_aircraft(root: Path) -> Path:
    folder = Path(root) / "fgvc-aircraft-2013b"
    data = folder / "data"
    _lines(data / "variants.txt", [a[0] for a in AIRCRAFT])
    _lines(data / "families.txt", sorted({a[1] for a in AIRCRAFT}))
    _lines(data / "manufacturers.txt", sorted({a[2] for a in AIRCRAFT}))
    image_id = 1000000
    rows = {s: [] for s in AIRCRAFT_SPLITS}
    for v, names in enumerate(AIRCRAFT):
        for split, n in AIRCRAFT_SPLITS.items():
            for _ in range(n):
                image_id += 1
                write_jpeg(data / "images" / f"{image_id:07d}.jpg", 20 * v, AIRCRAFT_HW, banner_px=20)
                rows[split].append((f"{image_id:07d}", names))
    for level, col in (("variant", 0), ("family", 1), ("manufacturer", 2)):
        for split in ("train", "val", "test"):
            _lines(data / f"images_{level}_{split}.txt", [f"{i} {n[col]}" for i, n in rows[split]])
        _lines(
            data / f"images_{level}_trainval.txt", [f"{i} {n[col]}" for i, n in rows["train"] + rows["val"]]
        )
    _lines(data / "images_box.txt", [f"{i} 0 0 39 39" for s in rows.values() for i, _ in s])
    return folder


# --- Stanford Cars -----------------------------------------------------------------------
CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012"]


def _cars_annos(n: int, offset: int) -> tuple[np.ndarray, list[int], list[str]]:
    dtype = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    arr = np.zeros((1, n), dtype=dtype)
    classes, names = [], []
    for k in range(n):
        cls = (k + offset) % len(CARS_CLASSES) + 1
        name = f"{k + 1:05d}.jpg"
        arr[0, k] = (
            np.array([[1]], dtype=np.uint8),
            np.array([[2]], dtype=np.uint8),
            np.array([[9]], dtype=np.uint8),
            np.array([[8]], dtype=np.uint8),
            np.array([[cls]], dtype=np.uint8),
            np.array([name]),
        )
        classes.append(cls)
        names.append(name)
    return arr, classes, names


def make_stanford_cars(
    root: Path, n_train: int = 6, n_test: int = 3, test_annos_in_devkit: bool = False
) -> Path:
    from scipy.io import savemat

    folder = Path(root) / "stanford_cars"
    devkit = folder / "devkit"
    devkit.mkdir(parents=True, exist_ok=True)
    names = np.empty((1, len(CARS_CLASSES)), dtype=object)
    names[0, :] = CARS_CLASSES
    savemat(str(devkit / "cars_meta.mat"), {"class_names": names})
    train, train_cls, train_names = _cars_annos(n_train, 0)
    savemat(str(devkit / "cars_train_annos.mat"), {"annotations": train})
    test, test_cls, test_names = _cars_annos(n_test, 1)
    fields = [f for f in test.dtype.names if f != "class"]
    unlabelled = np.zeros(test.shape, dtype=[(f, "O") for f in fields])
    for f in fields:
        unlabelled[f] = test[f]
    savemat(str(devkit / "cars_test_annos.mat"), {"annotations": unlabelled})
    where = devkit if test_annos_in_devkit else folder
    savemat(str(where / "cars_test_annos_withlabels.mat"), {"annotations": test})
    for n, c in zip(train_names, train_cls):
        write_jpeg(folder / "cars_train" / n, 60 * c)
    for n, c in zip(test_names, test_cls):
        write_jpeg(folder / "cars_test" / n, 60 * c)
    return folder


# --- iNaturalist -------------------------------------------------------------------------
INAT_SPECIES = [("Plantae", "Acer rubrum"), ("Aves", "Turdus migratorius"), ("Insecta", "Apis mellifera")]


def make_inaturalist(root: Path, year: int, n_train: int = 2, n_val: int = 1) -> Path:
    """train{year}.json / val{year}.json (COCO style); category ids are assigned in reverse
    listing order, so a reader that labels by list position instead of id fails."""
    folder = Path(root) / f"inat{year}"
    image_dir = "train_val_images" if year == 2017 else "train_val2018"
    cats = [
        {"id": len(INAT_SPECIES) - 1 - i, "name": sp, "supercategory": sup}
        for i, (sup, sp) in enumerate(INAT_SPECIES)
    ]
    image_id = 0
    for split, n in (("train", n_train), ("val", n_val)):
        images, annos = [], []
        for cat in cats:
            for _ in range(n):
                image_id += 1
                rel = f"{image_dir}/{cat['supercategory']}/{cat['name']}/{image_id:06x}.jpg"
                write_jpeg(folder / rel, 70 * cat["id"])
                images.append(
                    {
                        "id": image_id,
                        "file_name": rel,
                        "width": IMAGE_HW[1],
                        "height": IMAGE_HW[0],
                        "license": 1,
                        "rights_holder": "x",
                    }
                )
                annos.append({"id": image_id, "image_id": image_id, "category_id": cat["id"]})
        data = {
            "info": {"year": year},
            "images": images,
            "annotations": annos,
            "categories": cats if year == 2017 else [{"id": c["id"], "name": str(c["id"])} for c in cats],
            "licenses": [],
        }
        (folder / f"{split}{year}.json").write_text(json.dumps(data))
    if year == 2018:
        (folder / "categories.json").write_text(
            json.dumps([{"id": c["id"], "name": c["name"], "kingdom": c["supercategory"]} for c in cats])
        )
    return folder


# --- Places205 ---------------------------------------------------------------------------
PLACES_CATEGORIES = ["a/abbey", "a/airport_terminal", "f/field/cultivated"]


def make_places205(root: Path, n_train: int = 2, n_val: int = 1) -> Path:
    folder = Path(root) / "places205"
    images = folder / "data" / "vision" / "torralba" / "deeplearning" / "images256"
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for label, cat in enumerate(PLACES_CATEGORIES):
            for k in range(n):
                rel = f"{cat}/{split[0]}{k:08d}.jpg"
                write_jpeg(images / rel, 80 * label)
                rows.append(f"{rel} {label}")
        _lines(folder / "trainvalsplit_places205" / f"{split}_places205.csv", rows)
    return folder


# --- Fashion-MNIST (IDX, gzip) -------------------------------------------------------------
def _idx(path: Path, arr: np.ndarray) -> None:
    import gzip
    import struct

    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    folder = Path(root) / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", g.integers(0, 256, (n, 28, 28)))
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def make_all(root: Path) -> dict:
    """Every fixture under ``root``: {dataset class name: root to pass}."""
    from mixbench.data.imagenet import IMAGENET100_CLASSES, read_class_list

    root = Path(root)
    return {
        "CIFAR10": make_cifar10(root / "cifar10").parent,
        "CIFAR100": make_cifar100(root / "cifar100").parent,
        "FashionMNIST": make_fashion_mnist(root),
        "TinyImageNet": make_tiny_imagenet(root),
        "ImageNet": make_imagenet(root / "in1k"),
        "ImageNet100": make_imagenet(
            root / "in100", n_train=1, n_val=1, all_wnids=read_class_list(IMAGENET100_CLASSES) + ["n01440764"]
        ),
        "CUB200": make_cub(root),
        "FGVCAircraft": make_aircraft(root),
        "StanfordCars": make_stanford_cars(root),
        "INaturalist2017": make_inaturalist(root, 2017),
        "INaturalist2018": make_inaturalist(root, 2018),
        "Places205": make_places205(root),
    }
