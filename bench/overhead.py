#!/usr/bin/env python
"""Engine overhead: the same model, data, batch and optimizer stepped by a bare PyTorch loop
and by mixbench's engine (mmengine Runner + data preprocessor + Vanilla mixer + hooks).

Reports training throughput (images per second of wall time, and per second of process CPU
time, which other processes on a busy machine do not distort) of each and the ratio
engine / bare, measured in one run: bare loop, engine, bare loop again (the engine is
compared with the mean of the two bare phases, which bracket it in time). The first epoch
of each phase is a warm-up.

    python bench/overhead.py [--device cpu|cuda] [--batch 128] [--width 16] [--epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

from mixbench.config import load_config  # noqa: E402
from mixbench.engine.runner import build_runner  # noqa: E402
from mixbench.method import resolve_method  # noqa: E402
from mixbench.registry import MODELS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/fashion_mnist/resnet18_w16_vanilla.yaml"


class EpochTimer(Hook):
    priority = "VERY_HIGH"

    def __init__(self):
        self.times, self.cpu_times, self.samples = [], [], []

    def before_train_epoch(self, runner):
        self.t0, self.c0, self.n = time.perf_counter(), time.process_time(), 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.n += data_batch["inputs"].shape[0]

    def after_train_epoch(self, runner):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.t0)
        self.cpu_times.append(time.process_time() - self.c0)
        self.samples.append(self.n)


def bare_loop(cfg: dict, device: str, epochs: int) -> tuple[list[float], list[float]]:
    """Images per wall second and per CPU second, per epoch, of a plain PyTorch loop over
    the same dataset and model."""
    import mixbench.data  # noqa: F401
    import mixbench.models  # noqa: F401
    from mixbench.registry import DATASETS

    torch.manual_seed(0)
    ds_cfg = copy.deepcopy(cfg["train_dataloader"]["dataset"])
    ds = DATASETS.build(ds_cfg)
    model_cfg = resolve_method(cfg)["model"]
    model = MODELS.build(model_cfg).to(device)
    opt_cfg = dict(cfg["optim_wrapper"]["optimizer"])
    opt_cfg.pop("type")
    opt = torch.optim.SGD(model.parameters(), **opt_cfg)
    mean = torch.tensor(cfg["model"]["data_preprocessor"]["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(cfg["model"]["data_preprocessor"]["std"], device=device).view(1, -1, 1, 1)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg["train_dataloader"]["batch_size"], shuffle=True, drop_last=False
    )
    rates, cpu_rates = [], []
    model.train()
    for _ in range(epochs):
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for batch in loader:
            x = (batch["inputs"].to(device).float() - mean) / std
            y = batch["data_samples"].to(device)
            loss = F.cross_entropy(model.logits(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += x.shape[0]
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0))
        cpu_rates.append(n / (time.process_time() - c0))
    return rates, cpu_rates


def engine(cfg: dict, epochs: int) -> tuple[list[float], list[float]]:
    timer = EpochTimer()
    cfg = copy.deepcopy(cfg)
    cfg["train_cfg"]["max_epochs"] = epochs
    cfg["train_cfg"]["val_interval"] = epochs + 1  # no validation inside the timed epochs
    cfg["default_hooks"]["checkpoint"]["interval"] = epochs + 1
    with tempfile.TemporaryDirectory() as wd:
        runner = build_runner(cfg, wd)
        runner.register_hook(timer, priority="VERY_HIGH")
        runner.train()
    return (
        [n / t for n, t in zip(timer.samples, timer.times)],
        [n / t for n, t in zip(timer.samples, timer.cpu_times)],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3, help="epochs per phase (first is warm-up)")
    p.add_argument("--samples", type=int, default=128 * 16, help="training images per epoch")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(
        CONFIG,
        [
            f"train_dataloader.batch_size={args.batch}",
            f"model.backbone.width={args.width}",
            f"train_dataloader.dataset.max_samples={args.samples}",
            "model.data_preprocessor.batch_augments=[]",
            "val_dataloader.dataset.max_samples=500",
            "default_hooks.logger.interval=1000",
        ],
    )
    (bare1, cbare1), (eng, ceng), (bare2, cbare2) = (
        bare_loop(cfg, args.device, args.epochs),
        engine(cfg, args.epochs),
        bare_loop(cfg, args.device, args.epochs),
    )
    skip = slice(1, None)  # first epoch of each phase is a warm-up
    bare = statistics.mean(bare1[skip] + bare2[skip])
    cbare = statistics.mean(cbare1[skip] + cbare2[skip])
    out = {
        "device": args.device,
        "batch": args.batch,
        "width": args.width,
        "threads": torch.get_num_threads(),
        "bare_img_per_s": round(bare, 1),
        "engine_img_per_s": round(statistics.mean(eng[skip]), 1),
        "ratio_engine_over_bare": round(statistics.mean(eng[skip]) / bare, 3),
        # images per CPU-second: robust to other processes competing for the cores
        "ratio_engine_over_bare_cpu_time": round(statistics.mean(ceng[skip]) / cbare, 3),
        "bare_epochs": [round(r, 1) for r in bare1[skip] + bare2[skip]],
        "engine_epochs": [round(r, 1) for r in eng[skip]],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
