"""Vanilla: returns the batch untouched, lam = 1, identity pairing."""

import torch
from mbtest.mixers import check_batch_size_one, check_output, make_batch

from mixbench.mixers import Vanilla


def test_returns_the_batch_unmixed():
    for dtype in (torch.float32, torch.bfloat16):
        x, y = make_batch(dtype=dtype, channels_last=True)
        out = check_output(Vanilla(), x, y, mask_method=False)
        assert out.inputs is x and torch.equal(out.y_b, y)
        assert out.lam.eq(1).all() and torch.equal(out.index, torch.arange(len(y)))
    check_batch_size_one(Vanilla())
