"""mixbench/engine/compat.py: what mixbench relies on beyond mmengine's public API still
holds in the installed mmengine (else the test lists what changed and where to adapt),
and the routes it provides behave."""

import pytest
import torch
from mmengine.optim import OptimWrapper
from torch import nn

from mixbench.engine import compat


def test_the_pinned_mmengine_still_offers_what_mixbench_relies_on():
    problems = compat.check_mmengine()
    assert not problems, "mmengine changed what mixbench relies on:\n" + "\n".join(problems)


def test_check_names_what_changed(monkeypatch):
    from mmengine.hooks import CheckpointHook

    monkeypatch.delattr(CheckpointHook, "_save_checkpoint_with_step")
    problems = compat.check_mmengine()
    assert any(
        "CheckpointHook._save_checkpoint_with_step" in p
        and "SafeCheckpointHook" in p
        and "mixbench/engine/compat.py" in p
        for p in problems
    ), problems


def test_backward_in_parts_counts_one_iteration():
    w = nn.Parameter(torch.ones(3))
    wrapper = OptimWrapper(torch.optim.SGD([w], lr=1.0), accumulative_counts=2)
    wrapper.initialize_count_status(nn.Linear(1, 1), 0, 4)
    for part in (w.sum(), 2 * w.sum()):
        compat.backward_part(wrapper, part)
        assert wrapper.inner_count == 0
    assert torch.equal(w.grad, torch.full((3,), 3.0))
    compat.count_iteration(wrapper)
    assert wrapper.inner_count == 1 and not wrapper.should_update()
    compat.count_iteration(wrapper)
    assert wrapper.should_update()


def test_checkpoint_writing_goes_through_the_public_method():
    calls = []

    class Recording(compat.CheckpointHookBase):
        def save_checkpoint_with_step(self, runner, step, meta):
            calls.append((runner, step, meta))

    Recording()._save_checkpoint_with_step("runner", 3, {"epoch": 3})
    assert calls == [("runner", 3, {"epoch": 3})]


def test_collate_functions_are_found_in_mixbench_registry():
    from mixbench.data.base import batch_collate

    samples = [{"inputs": torch.full((1, 2, 2), i, dtype=torch.uint8), "data_samples": i} for i in range(4)]
    cfg = {
        "dataset": samples,
        "sampler": {"type": "DefaultSampler", "shuffle": False},
        "batch_size": 2,
        "collate_fn": {"type": "batch_collate"},
    }
    loader = compat.RunnerBase.build_dataloader(cfg)
    assert loader.collate_fn.func is batch_collate and cfg["collate_fn"] == {"type": "batch_collate"}
    batch = next(iter(loader))
    assert batch["inputs"].shape == (2, 1, 2, 2) and batch["data_samples"].tolist() == [0, 1]
    mmengine_own = compat.RunnerBase.build_dataloader({**cfg, "collate_fn": {"type": "default_collate"}})
    assert mmengine_own.collate_fn.func.__module__.startswith("mmengine")
    with pytest.raises(KeyError, match="Unknown function 'batch_colate'.*did you mean 'batch_collate'"):
        compat.RunnerBase.build_dataloader({**cfg, "collate_fn": {"type": "batch_colate"}})
