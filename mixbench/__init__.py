"""mixbench: a toolbox and benchmark for mixup augmentation in image classification."""

__version__ = "0.1.0"
