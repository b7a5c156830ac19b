"""mixbench.data: datasets (registered in DATASETS, their facts in catalog.py), the per-sample
pipeline (TRANSFORMS, pipeline.py) and the batch augments (BATCH_AUGMENTS, batch_augments.py)."""

from .base import InMemoryDataset
from .batch_augments import BatchRandomErasing, RandomCropPad, RandomFlip
from .cifar import CIFAR10, CIFAR100
from .digits import Digits
from .fashion_mnist import FashionMNIST
from .io import DatasetError
from .rand_augment import FixMatchRandAugment, TimmRandAugment

__all__ = [
    "DatasetError",
    "InMemoryDataset",
    "Digits",
    "FashionMNIST",
    "CIFAR10",
    "CIFAR100",
    "RandomCropPad",
    "RandomFlip",
    "BatchRandomErasing",
    "FixMatchRandAugment",
    "TimmRandAugment",
]

# Image-file datasets (the benchmark's JPEG sets) and the per-sample transform pipeline.
from .aircraft import FGVCAircraft  # noqa: E402
from .base import ImageFileDataset, TransformedDataset  # noqa: E402
from .cub import CUB200  # noqa: E402
from .image_folder import ImageFolder, ListFileDataset  # noqa: E402
from .imagenet import ImageNet, ImageNet100  # noqa: E402
from .inaturalist import INaturalist2017, INaturalist2018  # noqa: E402
from .pipeline import build_pipeline  # noqa: E402
from .places205 import Places205  # noqa: E402
from .stanford_cars import StanfordCars  # noqa: E402
from .tiny_imagenet import TinyImageNet  # noqa: E402

__all__ += [
    "ImageFileDataset",
    "TransformedDataset",
    "build_pipeline",
    "ImageFolder",
    "ListFileDataset",
    "TinyImageNet",
    "ImageNet",
    "ImageNet100",
    "CUB200",
    "FGVCAircraft",
    "StanfordCars",
    "INaturalist2017",
    "INaturalist2018",
    "Places205",
]
