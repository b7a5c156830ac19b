#!/usr/bin/env python
"""Cost of the learnable and label-mixing methods against Vanilla on the same backbone.

One training step (what mixbench's runner calls, with an mmengine ``OptimWrapper``: forward,
backward(s), SGD step; AutoMix/SAMix also their EMA update) per method on a fixed random
batch, in one run; ``<method>, one backward`` rows step AutoMix/SAMix with mmengine's default
``train_step`` (all losses in one graph, one backward) for a before/after comparison:

* time per iteration: the methods are stepped round-robin (``--rounds`` rounds of
  ``--iters`` steps each after a warm-up, the order rotated every round) and each
  method's fastest round is reported, so
  that a slow phase of a shared machine hits every method alike and is discarded; on CPU
  also the process CPU time per iteration (all threads), which other processes on a
  shared machine disturb much less than wall time;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the steps; on CPU the peak
  resident set size above the set-up's (Linux ``VmHWM`` reset through ``clear_refs``),
  each method measured in its own subprocess so that freed memory of one method does not
  hide the next one's.

Ratios are against Vanilla with the same backbone (ResNet-18 CIFAR for Mixup, DecoupleMix,
AutoMix, SAMix, AdAutoMix, AdaMixUp -- its official two forward passes and ``one_forward``;
a ViT for TransMix).

    python bench/learnable.py [--device cpu|cuda] [--batch 64] [--width 16] [--size 32]
                              [--vit-dim 192] [--vit-depth 12] [--patch 4] [--rounds 5] [--iters 3]
    python bench/learnable.py --ddp 2 [...]   # peak memory per process under DDP instead
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from timing import round_robin, sync  # noqa: E402

from mixbench.registry import MODELS  # noqa: E402

CNN_METHODS = (
    "Vanilla",
    "Mixup",
    "DecoupleMix",
    "AutoMix",
    "AutoMix, one backward",
    "SAMix",
    "SAMix, one backward",
    "AdAutoMix",
    "AdAutoMix, one backward",
    "AdaMixUp",  # issue 18 (adamixup)
    "AdaMixUp, one forward",
)
ONE_BACKWARD = ", one backward"  # the same model stepped by mmengine's default train_step
VIT_METHODS = ("Vanilla-ViT", "CutMix-ViT", "TransMix", "SMMix", "TokenMix")  # issue 18 (methods-e)


def model_config(method: str, args) -> dict:
    resnet = {"type": "ResNetCIFAR", "depth": 18, "width": args.width}
    vit = {
        "type": "ViTBackbone",
        "model_name": "vit_tiny_patch16_224",
        "img_size": args.size,
        "patch_size": args.patch,
        "embed_dim": args.vit_dim,
        "depth": args.vit_depth,
        "num_heads": max(args.vit_dim // 64, 1),
    }
    head = {"type": "LinearHead", "num_classes": 100}
    mixers = {
        "Vanilla": {"type": "Vanilla"},
        "Mixup": {"type": "Mixup", "alpha": 1.0},
        "DecoupleMix": {"type": "Mixup", "alpha": 1.0},
        "Vanilla-ViT": {"type": "Vanilla"},
        "CutMix-ViT": {"type": "CutMix", "alpha": 1.0},
        "TransMix": {"type": "CutMix", "alpha": 1.0},
    }
    if method.removesuffix(ONE_BACKWARD) == "AutoMix":
        return {
            "type": "AutoMixClassifier",
            "backbone": resnet,
            "head": head,
            "alpha": 2.0,
            "mask_stage": 3,
            "mix_block": {"type": "PixelMixBlock", "reduction": 2},
        }
    if method.removesuffix(ONE_BACKWARD) == "SAMix":  # the class defaults are SAMix's published ones
        return {"type": "SAMixClassifier", "backbone": resnet, "head": head, "mask_stage": 3}
    if method.removesuffix(ONE_BACKWARD) == "AdAutoMix":  # the class defaults are the published ones
        return {"type": "AdAutoMixClassifier", "backbone": resnet, "head": head, "mask_stage": 3}
    if method.startswith("AdaMixUp"):  # the class defaults are the official code's (2 passes)
        return {
            "type": "AdaMixUpClassifier",
            "backbone": resnet,
            "head": head,
            "one_forward": method.endswith("one forward"),
        }
    if method == "SMMix":  # every step an SMMix step (the 0.8/0.2 switch averages it with Mixup)
        return {
            "type": "SMMixClassifier",
            "backbone": vit,
            "head": head,
            "prob": 1.0,
            "mixer": {"type": "Mixup", "alpha": 1.0},
        }
    if method == "TokenMix":  # every step a TokenMix step, the model's own score maps (no teacher
        tokens = (args.size // args.patch) ** 2  # file); min_tokens: the published 14 of 196
        return {
            "type": "TokenMixClassifier",
            "backbone": vit,
            "head": head,
            "prob": 1.0,
            "teacher": None,
            "min_tokens": tokens // 14,
        }
    cfg = {
        "type": "TransMixClassifier" if method == "TransMix" else "MixupClassifier",
        "backbone": vit if method in VIT_METHODS else resnet,
        "head": head,
        "mixer": mixers[method],
    }
    if method == "DecoupleMix":
        cfg["loss"] = {"type": "DecoupledMixupLoss", "eta": 0.1}
    return cfg


def make_step(method: str, args, ddp: bool = False):
    """A closure doing one training step of ``method`` on a fixed batch; with ``ddp`` (in an
    initialised process group) through the DDP wrapper of mixbench's distributed runs
    (``StagedDistributedDataParallel``), or mmengine's for the ``one backward`` rows."""
    from mmengine.model import BaseModel, MMDistributedDataParallel
    from mmengine.optim import OptimWrapper

    import mixbench.models  # noqa: F401  (registers the models)
    from mixbench.engine.ddp import StagedDistributedDataParallel
    from mixbench.engine.staged import train_step_in_stages
    from mixbench.models.stages import StagedLosses

    torch.manual_seed(0)
    cfg = model_config(method, args)
    cfg["data_preprocessor"] = {"type": "ClassifierDataPreprocessor", "mean": [0.0] * 3, "std": [1.0] * 3}
    module = model = MODELS.build(cfg).to(args.device).train()
    wrapper = OptimWrapper(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    )
    data = {
        "inputs": torch.randn(args.batch, 3, args.size, args.size, device=args.device),
        "data_samples": torch.randint(0, 100, (args.batch,), device=args.device),
    }
    if ddp:
        wrap = MMDistributedDataParallel if method.endswith(ONE_BACKWARD) else StagedDistributedDataParallel
        model = wrap(
            module=module,
            device_ids=None if args.device == "cpu" else [args.device],
            forward_sync_buffers=False,
        )
        train_step = type(model).train_step
    elif isinstance(model, StagedLosses) and not method.endswith(ONE_BACKWARD):
        train_step = train_step_in_stages  # what mixbench's runner runs (StagedStep)
    else:
        train_step = BaseModel.train_step

    def step() -> None:
        train_step(model, data, wrapper)  # what the runner calls: forward, backward(s), step
        if hasattr(module, "momentum_update"):
            module.momentum_update()

    return step


def time_methods(methods, args) -> tuple:
    """Best wall and CPU seconds per iteration of each method, stepped round-robin."""
    times = round_robin(
        {m: make_step(m, args) for m in methods}, args.device, rounds=args.rounds, calls=args.iters
    )
    return {m: t.best for m, t in times.items()}, {m: t.cpu_best for m, t in times.items()}


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mb(method: str, args, ddp: bool = False) -> float:
    """Peak memory of ``method``'s steps above its set-up, in MiB (see the module doc)."""
    step = make_step(method, args, ddp=ddp)
    if args.device.startswith("cuda"):
        sync(args.device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(3):
            step()
        sync(args.device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
    for _ in range(3):
        step()
    return (rss_kb("VmHWM") - base) / 1024


def memory_in_subprocess(method: str, argv: list) -> float:
    out = subprocess.run(
        [sys.executable, __file__, *argv, "--memory-of", method], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def _ddp_worker(rank: int, world: int, init_file: str, method: str, args, out) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo" if args.device == "cpu" else "nccl",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
    )
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.device.startswith("cuda"):  # one GPU per process
            args = argparse.Namespace(**{**vars(args), "device": f"cuda:{rank}"})
            torch.cuda.set_device(args.device)
        mem = peak_memory_mb(method, args, ddp=True)
        out.put((rank, mem))
    finally:
        dist.destroy_process_group()


def ddp_memory(method: str, args) -> float:
    """Peak memory per process (the largest over the ``--ddp`` processes) of ``method``
    trained under DDP, each method in a fresh group of processes."""
    import tempfile

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(args.ddp, f"{tmp}/init", method, args, out), nprocs=args.ddp, join=True)
    return max(out.get()[1] for _ in range(args.ddp))


def markdown(times: dict, cpu: dict, mems: dict, args) -> str:
    rows = [
        f"Device {args.device}, batch {args.batch}, {args.size} px, {torch.get_num_threads()} "
        f"threads; ResNet-18 CIFAR width {args.width}; ViT dim {args.vit_dim} depth "
        f"{args.vit_depth} patch {args.patch}.",
        "",
        "| method | backbone | s/iter | time vs Vanilla | CPU s/iter | CPU time vs Vanilla "
        "| peak MiB | memory vs Vanilla |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for methods, base, backbone in (
        (CNN_METHODS, "Vanilla", "ResNet-18"),
        (VIT_METHODS, "Vanilla-ViT", "ViT"),
    ):
        for m in methods:
            rows.append(
                f"| {m} | {backbone} | {times[m]:.4f} | {times[m] / times[base]:.2f}x | "
                f"{cpu[m]:.4f} | {cpu[m] / cpu[base]:.2f}x | "
                f"{mems[m]:.0f} | {mems[m] / mems[base]:.2f}x |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 width (64: the standard one)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--vit-dim", type=int, default=192)
    parser.add_argument("--vit-depth", type=int, default=12)
    parser.add_argument("--patch", type=int, default=4, help="ViT patch size (16 for DeiT at 224 px)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--ddp",
        type=int,
        default=0,
        help="only the peak memory per process of the ResNet methods trained "
        "under DDP with this many processes (gloo on the CPU)",
    )
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(peak_memory_mb(args.memory_of, args))
        return
    if args.ddp:
        mems = {m: ddp_memory(m, args) for m in CNN_METHODS}
        print(
            f"Peak memory per process under DDP, {args.ddp} processes, device {args.device}, "
            f"batch {args.batch} per process, ResNet-18 CIFAR width {args.width}:\n"
        )
        print("| method | peak MiB | memory vs Vanilla |\n|---|---|---|")
        for m, mem in mems.items():
            print(f"| {m} | {mem:.0f} | {mem / mems['Vanilla']:.2f}x |")
        if args.json:
            Path(args.json).write_text(json.dumps({"ddp_peak_mib": mems, "args": vars(args)}, indent=2))
        return
    argv = sys.argv[1:]
    methods = CNN_METHODS + VIT_METHODS
    mems = {m: memory_in_subprocess(m, argv) for m in methods}
    times, cpu = time_methods(methods, args)
    print(markdown(times, cpu, mems, args))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"s_per_iter": times, "cpu_s_per_iter": cpu, "peak_mib": mems, "args": vars(args)}, indent=2
            )
        )


if __name__ == "__main__":
    main()
