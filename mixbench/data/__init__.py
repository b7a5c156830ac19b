"""mixbench.data: datasets (registered in DATASETS) and batched transforms."""
from .base import DatasetError, InMemoryDataset
from .cifar import CIFAR10, CIFAR100
from .digits import Digits
from .fashion_mnist import FashionMNIST
from .transforms import RandomCropPad, RandomFlip

__all__ = ["DatasetError", "InMemoryDataset", "Digits", "FashionMNIST", "CIFAR10", "CIFAR100",
           "RandomCropPad", "RandomFlip"]
