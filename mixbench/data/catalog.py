"""The benchmark datasets by short name (the ``meta.dataset`` of the configs): registered
class, splits and their official image counts. Used by ``tools/prepare_data.py``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CatalogEntry:
    type: str  # registered dataset class
    counts: dict  # split -> official number of images (None: unchecked)
    num_classes: int
    kwargs: dict = field(default_factory=dict)


CATALOG = {
    "cifar10": CatalogEntry("CIFAR10", {"train": 50_000, "test": 10_000}, 10),
    "cifar100": CatalogEntry("CIFAR100", {"train": 50_000, "test": 10_000}, 100),
    "fashion_mnist": CatalogEntry("FashionMNIST", {"train": 60_000, "test": 10_000}, 10),
    "tiny_imagenet": CatalogEntry("TinyImageNet", {"train": 100_000, "val": 10_000}, 200),
    "imagenet1k": CatalogEntry("ImageNet", {"train": 1_281_167, "val": 50_000}, 1000),
    "imagenet100": CatalogEntry("ImageNet100", {"train": None, "val": 5_000}, 100),
    "cub200": CatalogEntry("CUB200", {"train": 5_994, "test": 5_794}, 200),
    "aircraft": CatalogEntry(
        "FGVCAircraft", {"train": 3_334, "val": 3_333, "trainval": 6_667, "test": 3_333}, 100
    ),
    "stanford_cars": CatalogEntry("StanfordCars", {"train": 8_144, "test": 8_041}, 196),
    "inat2017": CatalogEntry("INaturalist2017", {"train": 579_184, "val": 95_986}, 5_089),
    "inat2018": CatalogEntry("INaturalist2018", {"train": 437_513, "val": 24_426}, 8_142),
    "places205": CatalogEntry("Places205", {"train": 2_448_873, "val": 20_500}, 205),
}


def catalog_entry(name: str) -> CatalogEntry:
    if name not in CATALOG:
        import difflib

        close = difflib.get_close_matches(name, list(CATALOG), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(CATALOG)}.{hint}")
    return CATALOG[name]
