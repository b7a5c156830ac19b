"""Shared test set-up: offline hubs, one thread per process (CI has 2 cores)."""
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from mbtest import REPO  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def repo():
    return REPO
