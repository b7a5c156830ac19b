"""Mixer tests run many tiny tensor ops: one intra-op thread avoids oversubscribing the
shared CPU (and is restored after each test)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
