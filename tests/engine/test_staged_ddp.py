"""StagedDistributedDataParallel: AutoMix's staged step under 2-process DDP (gloo, CPU)
updates the model exactly as mmengine's one-backward DDP step does, keeps the processes in
step, reports mismatched gradients, and is the wrapper of every distributed run."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mbtest.repo import REPO

from mixbench.sweep.launch import free_port

TINY = {"type": "ResNetCIFAR", "depth": 8, "width": 8, "in_channels": 1}


def _tiny_automix():
    from mixbench.models import AutoMixClassifier

    torch.manual_seed(0)
    return AutoMixClassifier(backbone=TINY, head={"type": "LinearHead", "num_classes": 5}, mask_stage=2)


def _batch(rank: int) -> dict:
    g = torch.Generator().manual_seed(10 + rank)  # each process its own images
    return {
        "inputs": torch.randint(0, 256, (6, 1, 16, 16), generator=g, dtype=torch.uint8),
        "data_samples": torch.arange(6) % 5,
    }


def _worker(rank: int, world: int, init_file: str) -> None:
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import OptimWrapper

    from mixbench.engine.ddp import StagedDistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        states, steps = [], []
        # the third: gradients averaged in buckets of 1 kB (many all-reduces), not 25 MB
        for wrapper_cls, cap in (
            (MMDistributedDataParallel, 25),
            (StagedDistributedDataParallel, 25),
            (StagedDistributedDataParallel, 0.001),
        ):
            model = wrapper_cls(
                module=_tiny_automix(), device_ids=None, forward_sync_buffers=False, bucket_cap_mb=cap
            )
            optim = OptimWrapper(
                torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
            )
            for it in range(2):
                torch.manual_seed(100 * it + rank)  # the same lambda/pairing draws for both
                log = model.train_step(_batch(rank + 2 * it), optim)
                assert torch.isfinite(log["loss"])
            states.append({k: v.clone() for k, v in model.module.state_dict().items()})
            steps.append(model)
        one_backward, staged, small_buckets = states
        trainable = [p for p in steps[2].module.parameters() if p.requires_grad]  # reduced
        assert len(steps[2]._buckets(trainable)) > 10
        for name, value in one_backward.items():  # the same two updates, up to summation order
            assert torch.allclose(staged[name].float(), value.float(), rtol=1e-4, atol=1e-6), name
            assert torch.equal(small_buckets[name], staged[name]), name  # bucketing: same sums
        # the processes stay in step: identical trainable weights everywhere
        for name, value in staged.items():
            if value.is_floating_point() and "running" not in name:
                gathered = [torch.empty_like(value) for _ in range(world)]
                dist.all_gather(gathered, value)
                assert all(torch.equal(g, gathered[0]) for g in gathered), name
        # a process missing a gradient is reported on every process, not paired wrongly;
        # so are gradients for as many but different parameters (rank 0 lacks the head's
        # weight, rank 1 its bias)
        model = steps[1]
        for missing in ([None, "weight"], ["bias", "weight"]):
            for p in model.module.parameters():
                p.grad = torch.ones_like(p) if p.requires_grad else None
            if missing[rank] is not None:
                getattr(model.module.head.fc, missing[rank]).grad = None
            with pytest.raises(
                RuntimeError,
                match="gradients for different parameters .* "
                r"the first, 'head\.fc\.(weight|bias)'",
            ):
                model.sync_gradients()
    finally:
        dist.destroy_process_group()


def test_staged_step_under_two_process_ddp_matches_the_one_backward_step(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)


def test_staged_wrapper_is_the_wrapper_of_distributed_runs():
    from mixbench.config import load_config
    from mixbench.engine import prepare_runner_config

    base = load_config(REPO / "configs/digits/resnet8_mixup.yaml")
    cfg = prepare_runner_config(base, "/tmp/x", launcher="pytorch")
    assert cfg["model_wrapper_cfg"]["type"] == "mixbench.StagedDistributedDataParallel"
    assert cfg["model_wrapper_cfg"]["forward_sync_buffers"] is False
    assert "model_wrapper_cfg" not in prepare_runner_config(base, "/tmp/x", launcher="none")
    user = prepare_runner_config(
        {**base, "model_wrapper_cfg": {"find_unused_parameters": True}}, "/tmp/x", launcher="pytorch"
    )
    assert user["model_wrapper_cfg"]["find_unused_parameters"] is True


def test_automix_trains_under_dist_train(tmp_path):
    """tools/dist_train.sh, 2 CPU processes: AutoMix runs the staged step under DDP and
    finishes with the same weights on both processes (checked by the test above); here the
    whole run: config, wrapper, EMA hook, result.json."""
    from mbtest.training import digits_config

    overrides = {
        "model": {"backbone": TINY},
        "method": {"classifier": {"mask_stage": 2}},
        "meta": {"backbone": "resnet8_w8"},
    }
    config = digits_config(tmp_path, "automix", overrides, epochs=1)
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable)
    wd = tmp_path / "work"
    proc = subprocess.run(
        ["bash", "tools/dist_train.sh", str(config), "2", "--work-dir", str(wd)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    from mixbench.results import load_result

    r = load_result(wd)
    assert r["status"] == "finished" and r["cost"]["num_devices"] == 2
    assert r["run"]["method"] == "AutoMix" and r["history"][0]["train_loss"] > 0
    logs = "".join(p.read_text() for p in wd.rglob("*.log"))
    assert "AutoMixClassifier: staged backward under DDP" in logs
