"""The dataset facts, in one table: for each benchmark dataset by short name (the
``meta.dataset`` of the configs), its registered class, its splits with their official image
counts, its number of classes and, for the in-memory sets, the image shape.

Readers of the table: the dataset classes (the splits they accept, ``check_counts``, the
image shape of CIFAR and Fashion-MNIST), :func:`check_num_classes` (a config's
``model.head.num_classes`` against its dataset, before training) and
``tools/prepare_data.py check``. The module imports neither torch nor the dataset classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mixbench.config import ConfigError, closest, get_path


@dataclass(frozen=True)
class CatalogEntry:
    type: str  # registered dataset class
    title: str  # the name people write, for messages
    counts: dict  # split -> official number of images (None: unchecked); its keys are the splits
    num_classes: int
    image_shape: tuple | None = None  # (C, H, W) of every image, for the in-memory sets
    # constructor options that change the classes: {option: {value: number of classes}}; a
    # value the table does not list (e.g. an ImageNet class_list) leaves the number unknown
    class_options: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def classes_with(self, options: Mapping) -> int | None:
        """The number of classes of the dataset built with ``options`` (its config or
        constructor options); None when an option makes it one the table does not know."""
        for option, by_value in self.class_options.items():
            value = options.get(option)
            if value is not None:
                return by_value.get(value) if isinstance(value, str) else None
        return self.num_classes


AIRCRAFT_LEVELS = {"variant": 100, "family": 70, "manufacturer": 41}

CATALOG = {
    "digits": CatalogEntry("Digits", "scikit-learn digits", {"train": 1_347, "test": 450}, 10),
    "fashion_mnist": CatalogEntry(
        "FashionMNIST", "Fashion-MNIST", {"train": 60_000, "test": 10_000}, 10, image_shape=(1, 28, 28)
    ),
    "cifar10": CatalogEntry(
        "CIFAR10", "CIFAR-10", {"train": 50_000, "test": 10_000}, 10, image_shape=(3, 32, 32)
    ),
    "cifar100": CatalogEntry(
        "CIFAR100", "CIFAR-100", {"train": 50_000, "test": 10_000}, 100, image_shape=(3, 32, 32)
    ),
    "tiny_imagenet": CatalogEntry(
        "TinyImageNet", "Tiny-ImageNet-200", {"train": 100_000, "val": 10_000}, 200
    ),
    "imagenet1k": CatalogEntry(
        "ImageNet",
        "ImageNet-1k",
        {"train": 1_281_167, "val": 50_000},
        1000,
        class_options={"class_list": {}},
    ),
    "imagenet100": CatalogEntry(
        "ImageNet100", "ImageNet-100", {"train": None, "val": 5_000}, 100, class_options={"class_list": {}}
    ),
    "cub200": CatalogEntry("CUB200", "CUB-200-2011", {"train": 5_994, "test": 5_794}, 200),
    "aircraft": CatalogEntry(
        "FGVCAircraft",
        "FGVC-Aircraft",
        {"train": 3_334, "val": 3_333, "trainval": 6_667, "test": 3_333},
        AIRCRAFT_LEVELS["variant"],
        class_options={"level": AIRCRAFT_LEVELS},
    ),
    "stanford_cars": CatalogEntry("StanfordCars", "Stanford Cars", {"train": 8_144, "test": 8_041}, 196),
    "inat2017": CatalogEntry("INaturalist2017", "iNaturalist 2017", {"train": 579_184, "val": 95_986}, 5_089),
    "inat2018": CatalogEntry("INaturalist2018", "iNaturalist 2018", {"train": 437_513, "val": 24_426}, 8_142),
    "places205": CatalogEntry("Places205", "Places205", {"train": 2_448_873, "val": 20_500}, 205),
}
BY_TYPE = {entry.type: entry for entry in CATALOG.values()}


def catalog_entry(name: str) -> CatalogEntry:
    if name not in CATALOG:
        close = closest(name, CATALOG)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(CATALOG)}.{hint}")
    return CATALOG[name]


def entry_of(cls: type) -> CatalogEntry | None:
    """The entry of a dataset class, or of its nearest base class in the table (a subclass
    of CUB200 reads CUB-200-2011's facts); None for a class outside it (ImageFolder)."""
    for base in cls.__mro__:
        if base.__name__ in BY_TYPE:
            return BY_TYPE[base.__name__]
    return None


def innermost_dataset(ds_cfg: Mapping) -> Mapping:
    """The dataset a dataset config reads: wrappers such as TransformedDataset name it under
    ``dataset``."""
    while isinstance(ds_cfg.get("dataset"), Mapping):
        ds_cfg = ds_cfg["dataset"]
    return ds_cfg


def check_num_classes(cfg: Mapping) -> None:
    """A config's ``model.head.num_classes`` must be the number of classes of each dataset
    its loaders read (the table's, with the dataset's options): a head of the wrong width
    would train, and score nonsense, or fail at the first label past its last class.
    Datasets outside the table (ImageFolder, ...) and options that make the number unknown
    (an ImageNet ``class_list``) are not checked."""
    head_classes = get_path(cfg, "model.head.num_classes")
    if head_classes is None:
        return
    src = cfg.get("_source_", "<config>")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        ds_cfg = get_path(cfg, f"{loader}.dataset")
        if not isinstance(ds_cfg, Mapping):
            continue
        inner = innermost_dataset(ds_cfg)
        entry = BY_TYPE.get(str(inner.get("type")))
        expected = entry.classes_with(inner) if entry is not None else None
        if entry is not None and expected is not None and head_classes != expected:
            options = {k: inner[k] for k in entry.class_options if k in inner}
            which = f" ({', '.join(f'{k}: {v}' for k, v in options.items())})" if options else ""
            name = next(k for k, v in CATALOG.items() if v is entry)
            base = "" if options else f" (configs/_base_/datasets/{name}.yaml sets it)"
            raise ConfigError(
                f"{src}: {entry.title}{which} has {expected} classes; model.head.num_classes is "
                f"{head_classes!r} ({loader}.dataset reads {entry.type}). Set "
                f"model.head.num_classes: {expected}{base}, or read a dataset with {head_classes} classes"
            )
