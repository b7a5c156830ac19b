#!/usr/bin/env python
"""Cost of the learnable and label-mixing methods against Vanilla on the same backbone.

Each row of :data:`ROWS` is a method file (``configs/methods/<name>.yaml``, its published
settings, patched where a switch would hide the method: e.g. ``prob: 1.0`` so that every
step is the method's) on a ResNet-18 CIFAR or a ViT. Per row, one training step (what
mixbench's runner calls, with an mmengine ``OptimWrapper``: the method's forward passes,
backward(s), SGD step; the engine's staged step for staged models; AutoMix/SAMix/AdAutoMix
also their EMA update) on a fixed random batch, in one run; ``<method>, one backward`` rows
step AutoMix/SAMix/AdAutoMix/MergeMix with mmengine's default ``train_step`` (all losses in one graph,
one backward) for a before/after comparison. Mixing work done inside the step (the mixer, a
saliency or CAM pass, AugMix's op chains) is measured; data loading is not:

* time per iteration: the methods are stepped round-robin (``--rounds`` rounds of
  ``--iters`` steps each after a warm-up, the order rotated every round) and each
  method's fastest round is reported, so
  that a slow phase of a shared machine hits every method alike and is discarded; on CPU
  also the process CPU time per iteration (all threads), which other processes on a
  shared machine disturb much less than wall time;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the steps; on CPU the peak
  resident set size above the set-up's (Linux ``VmHWM`` reset through ``clear_refs``),
  each method measured in its own subprocess so that freed memory of one method does not
  hide the next one's;
* the expected time ratio: what the passes of the method's definition cost (each row's
  ``passes`` and ``units``, see :class:`Row`), to compare with the measured one.

Ratios are against the Vanilla row of the same backbone (``Vanilla``: ResNet-18 CIFAR,
``Vanilla-ViT``: the ViT), measured in the same run.

    python bench/learnable.py [--device cpu|cuda] [--batch 64] [--width 16] [--size 32]
                              [--vit-dim 192] [--vit-depth 12] [--patch 4] [--rounds 5] [--iters 3]
                              [--methods ROW ...]   # some rows (with their Vanilla) only
    python bench/learnable.py --ddp 2 [...]   # peak memory per process under DDP instead
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from timing import round_robin, sync  # noqa: E402

from mixbench.config import did_you_mean, load_config, merge  # noqa: E402
from mixbench.method import resolve_method  # noqa: E402
from mixbench.registry import MODELS  # noqa: E402


class Row(NamedTuple):
    """One row of the table: a method file on a backbone, patched for the benchmark.

    ``method`` names ``configs/methods/<method>.yaml`` (its published settings); ``patch``
    (a dict, or a function of the command-line arguments returning one) is merged onto its
    ``method:`` section (:func:`mixbench.config.merge`), e.g. ``prob: 1.0`` so that every
    step is a step of the method. ``passes`` says what one step of the method's definition
    runs (B: the batch) and ``units`` counts them in forward-equivalents of B (a forward 1,
    a backward 2, a backward to the input only 1; Vanilla's step is 3), so ``units / 3`` is
    the time ratio the passes alone require. ``one_backward``: step the model with mmengine's
    default ``train_step`` (all losses in one graph, one backward) instead of the staged step.
    """

    method: str
    backbone: str = "ResNet"  # "ResNet" (ResNet-18 CIFAR) or "ViT": compared with its Vanilla row
    patch: dict | Callable[[argparse.Namespace], dict] = {}  # noqa: RUF012  (read only)
    passes: str = "fwd+bwd B"
    units: float = 3.0
    one_backward: bool = False


def _tokenmix(args) -> dict:  # the model's own score maps (no teacher file); min_tokens: 14 of 196
    return {"classifier": {"prob": 1.0, "teacher": None, "min_tokens": (args.size // args.patch) ** 2 // 14}}


_AUTOMIX = "EMA fwd B to the mask stage (no grad); fwd+bwd B mixed, B clean; EMA fwd B + bwd to the input"
_ADAUTOMIX = "fwd+bwd B clean, B Mixup, B generator mix; EMA fwd B + bwd to the input; EMA fwd B (no grad)"
_MERGEMIX = "ToMe fwd B to block 9 of 12 (no grad) + fwd+bwd B MergeMix + fwd+bwd B Mixup"
BASELINES = {"ResNet": "Vanilla", "ViT": "Vanilla-ViT"}
#: every row, in table order; a method's row is one entry
ROWS: dict[str, Row] = {
    "Vanilla": Row("vanilla"),
    "Mixup": Row("mixup"),
    "DecoupleMix": Row("decouple_mixup"),
    "AutoMix": Row("automix", passes=_AUTOMIX, units=8.6),
    "AutoMix, one backward": Row("automix", passes=_AUTOMIX, units=8.6, one_backward=True),
    "SAMix": Row("samix", passes=_AUTOMIX, units=8.6),
    "SAMix, one backward": Row("samix", passes=_AUTOMIX, units=8.6, one_backward=True),
    "AdAutoMix": Row("adautomix", passes=_ADAUTOMIX, units=12),
    "AdAutoMix, one backward": Row("adautomix", passes=_ADAUTOMIX, units=12, one_backward=True),
    # issue 18
    "GuidedMixup": Row(
        "guidedmixup",
        patch={"mixer": {"prob": 1.0}},
        passes="saliency: fwd B + bwd to the input (eval); fwd+bwd B",
        units=5,
    ),
    "SnapMix": Row("snapmix", passes="CAMs: fwd B (no grad, eval); fwd+bwd B", units=4),
    "RegMixup": Row("regmixup", passes="fwd+bwd 2B (clean + mixed, one forward)", units=6),
    "RankMixup": Row("rankmixup", passes="fwd+bwd B raw + fwd+bwd 3B (3 mixes)", units=12),
    "RankMixup-MRL": Row("rankmixup_mrl", passes="fwd+bwd B raw + fwd+bwd B (1 mix)", units=6),
    "AugMix": Row(
        "augmix", passes="fwd+bwd 3B (clean + 2 views, one forward); the views' op chains", units=9
    ),
    "SUMix": Row("sumix", passes="fwd+bwd B clean + fwd+bwd B mixed", units=6),
    # AdaMixUp's policy network (a second trunk) on the B/2 pairs, then the official two
    # forwards: classifier on B (B/2 mixed + their originals), discriminator on 3B/2
    "AdaMixUp": Row("adamixup", passes="PRG fwd+bwd B/2; fwd+bwd B; fwd+bwd 3B/2", units=9),
    "AdaMixUp, one forward": Row(
        "adamixup",
        patch={"classifier": {"one_forward": True}},
        passes="PRG fwd+bwd B/2; fwd+bwd 3B/2",
        units=6,
    ),
    "Vanilla-ViT": Row("vanilla", "ViT"),
    "CutMix-ViT": Row("cutmix", "ViT", {"mixer": {"alpha": 1.0}}),
    "TransMix": Row(
        "transmix",
        "ViT",
        {"mixer": {"type": "CutMix", "alpha": 1.0}},
        passes="fwd+bwd B; last block's class-token attention",
    ),
    # every step an SMMix step (the published 0.8/0.2 switch averages it with Mixup)
    "SMMix": Row("smmix", "ViT", {"classifier": {"prob": 1.0}}, "fwd B (no grad, eval) + fwd+bwd B", 4),
    # issue 18
    "TL-Align": Row("tlalign", "ViT", passes="fwd+bwd B; every block's attention (no grad)"),
    "MixPro": Row("mixpro", "ViT", {"classifier": {"prob": 1.0}}, "fwd+bwd B; last block's attention"),
    "MergeMix": Row("mergemix", "ViT", passes=_MERGEMIX, units=6.6),
    "MergeMix, one backward": Row("mergemix", "ViT", passes=_MERGEMIX, units=6.6, one_backward=True),
    "TokenMix": Row("tokenmix", "ViT", _tokenmix, "fwd B (no grad, eval; own score maps) + fwd+bwd B", 4),
}


def model_config(name: str, args) -> dict:
    """The model the runner builds for row ``name``: the row's method file (patched) on the
    benchmark's backbone, a linear head of 100 classes."""
    row = ROWS[name]
    backbone = {
        "ResNet": {"type": "ResNetCIFAR", "depth": 18, "width": args.width},
        "ViT": {
            "type": "ViTBackbone",
            "model_name": "vit_tiny_patch16_224",
            "img_size": args.size,
            "patch_size": args.patch,
            "embed_dim": args.vit_dim,
            "depth": args.vit_depth,
            "num_heads": max(args.vit_dim // 64, 1),
        },
    }[row.backbone]
    recipe = {
        "backbone": backbone,
        "head": {"type": "LinearHead", "num_classes": 100},
        "data_preprocessor": {"type": "ClassifierDataPreprocessor", "mean": [0.0] * 3, "std": [1.0] * 3},
    }
    method = load_config(REPO / "configs" / "methods" / f"{row.method}.yaml")["method"]
    patch = row.patch(args) if callable(row.patch) else row.patch
    return resolve_method({"model": recipe, "method": merge(method, patch)})["model"]


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
    one_backward = ROWS[method].one_backward
    module = model = MODELS.build(cfg).to(args.device).train()
    wrapper = OptimWrapper(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    )
    data = {
        "inputs": torch.randn(args.batch, 3, args.size, args.size, device=args.device),
        "data_samples": torch.randint(0, 100, (args.batch,), device=args.device),
    }
    if ddp:
        wrap = MMDistributedDataParallel if one_backward else StagedDistributedDataParallel
        model = wrap(
            module=module,
            device_ids=None if args.device == "cpu" else [args.device],
            forward_sync_buffers=False,
        )
        train_step = type(model).train_step
    elif isinstance(model, StagedLosses) and not one_backward:
        train_step = train_step_in_stages  # what mixbench's runner runs (StagedStep)
    else:
        train_step = BaseModel.train_step

    def step() -> None:
        train_step(model, data, wrapper)  # what the runner calls: forward, backward(s), step
        if hasattr(module, "momentum_update"):
            module.momentum_update()

    step.module = module  # type: ignore[attr-defined]  # the model stepped (for tests)
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


def markdown(methods: list, times: dict, cpu: dict, mems: dict, args) -> str:
    rows = [
        f"Device {args.device}, batch {args.batch}, {args.size} px, {torch.get_num_threads()} "
        f"threads; ResNet-18 CIFAR width {args.width}; ViT dim {args.vit_dim} depth "
        f"{args.vit_depth} patch {args.patch}.",
        "",
        "| method | backbone | passes per step | expected time | s/iter | time vs Vanilla | CPU s/iter "
        "| CPU time vs Vanilla | peak MiB | memory vs Vanilla |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        row, base = ROWS[m], BASELINES[ROWS[m].backbone]
        rows.append(
            f"| {m} | {row.backbone} | {row.passes} | {row.units / 3:.2f}x | {times[m]:.4f} | "
            f"{times[m] / times[base]:.2f}x | {cpu[m]:.4f} | {cpu[m] / cpu[base]:.2f}x | "
            f"{mems[m]:.0f} | {mems[m] / mems[base]:.2f}x |"
        )
    return "\n".join(rows)


def selected(names: list | None) -> list:
    """The rows to run, in table order: ``names`` (all rows when None) and the Vanilla row
    of each one's backbone; an unknown name is refused with the closest one."""
    if names is None:
        return list(ROWS)
    for name in names:
        if name not in ROWS:
            raise SystemExit(
                f"bench/learnable.py: no row {name!r}{did_you_mean(name, ROWS)} The rows are: {', '.join(ROWS)}"
            )
    wanted = set(names) | {BASELINES[ROWS[n].backbone] for n in names}
    return [m for m in ROWS if m in wanted]


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
        "--methods",
        nargs="+",
        metavar="ROW",
        help="only these rows (and the Vanilla row of their backbone); default: every row",
    )
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
    methods = selected(args.methods)
    if args.ddp:
        resnet = [m for m in methods if ROWS[m].backbone == "ResNet"]
        if not resnet:
            raise SystemExit("bench/learnable.py --ddp measures the ResNet rows; --methods selects none")
        mems = {m: ddp_memory(m, args) for m in resnet}
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
    mems = {m: memory_in_subprocess(m, argv) for m in methods}
    times, cpu = time_methods(methods, args)
    print(markdown(methods, times, cpu, mems, args))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"s_per_iter": times, "cpu_s_per_iter": cpu, "peak_mib": mems, "args": vars(args)}, indent=2
            )
        )


if __name__ == "__main__":
    main()
