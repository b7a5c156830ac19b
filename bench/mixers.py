"""Benchmark: time per batch of every static mixer, as a ratio to one forward+backward of
the reference model (width-16 CIFAR ResNet-18), side by side with timm and torchvision.

    python bench/mixers.py                       # CPU, batch 128, 3x32x32 and 3x224x224
    python bench/mixers.py --device cuda --sizes 32 224 --json out.json

Each entry is the best (minimum) time over rounds (after a warm-up call) of one mixer call
on a fixed random batch; all entries are timed round-robin, one call each per round, so that
load on a shared machine hits them alike; on CUDA every timing is synchronised. The
reference step is likewise the best of its repeats. timm's Mixup mixes in
place, so it is timed on the same tensor over and over (no copy charged to it), as are ours
with ``inplace=True``; our default mixers and torchvision return a new batch. Ratios are ``mixer time / reference forward+backward time`` measured in
the same run, so they compare across machines better than milliseconds do. A second table
times the issue's targets head to head (:data:`TARGETS`: each pair round-robin alone).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_time, round_robin  # noqa: E402

from mixbench import mixers as M  # noqa: E402


def reference_model(num_classes: int = 100) -> nn.Module:
    """Width-16 CIFAR ResNet-18 + global pooling + linear head (the lead's ResNetCIFAR)."""
    from mixbench.models.backbones.resnet_cifar import ResNetCIFAR

    backbone = ResNetCIFAR(depth=18, width=16)
    return nn.Sequential(
        backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(backbone.out_channels[-1], num_classes)
    )


def reference_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    return step


def our_mixers(lam_mode: str) -> dict[str, M.BaseMixer]:
    kw = dict(lam_mode=lam_mode)
    return {
        "Vanilla": M.Vanilla(),
        "Mixup": M.Mixup(alpha=1.0, **kw),
        "CutMix": M.CutMix(alpha=1.0, **kw),
        "DeiT (Mixup|CutMix)": M.DeiTMixer(lam_mode=lam_mode),
        "SmoothMix": M.SmoothMix(**kw),
        "SaliencyMix": M.SaliencyMix(alpha=1.0, **kw),
        "FMix": M.FMix(alpha=1.0, **kw),
        "GridMix": M.GridMix(alpha=1.0, **kw),
        "ResizeMix": M.ResizeMix(**kw),
    }


def peer_mixers(num_classes: int) -> dict[str, Callable]:
    """timm and torchvision callables ``f(x, y)``."""
    from timm.data import Mixup as TimmMixup
    from torchvision.transforms import v2

    peers = {}
    for mode in ("batch", "elem"):
        peers[f"timm Mixup [{mode}]"] = TimmMixup(
            mixup_alpha=1.0, cutmix_alpha=0.0, mode=mode, label_smoothing=0.0, num_classes=num_classes
        )
        peers[f"timm CutMix [{mode}]"] = TimmMixup(
            mixup_alpha=0.0, cutmix_alpha=1.0, mode=mode, label_smoothing=0.0, num_classes=num_classes
        )
    peers["torchvision MixUp [batch]"] = v2.MixUp(alpha=1.0, num_classes=num_classes)
    peers["torchvision CutMix [batch]"] = v2.CutMix(alpha=1.0, num_classes=num_classes)
    return peers


#: The issue's targets, each timed head to head: (ours, peer, minimum speed-up peer/ours).
#: Like against like: in-place against timm (which overwrites its input), a new batch
#: against torchvision (which returns one), per-sample lambda against timm's ``elem``.
TARGETS = [
    ("Mixup inplace [batch]", "timm Mixup [batch]", 1.0),
    ("CutMix inplace [batch]", "timm CutMix [batch]", 1.0),
    ("Mixup [batch]", "torchvision MixUp [batch]", 1.0),
    ("CutMix [batch]", "torchvision CutMix [batch]", 1.0),
    ("Mixup [elem]", "timm Mixup [elem]", 5.0),
    ("Mixup inplace [elem]", "timm Mixup [elem]", 5.0),
    ("CutMix [elem]", "timm CutMix [elem]", 5.0),
    ("CutMix inplace [elem]", "timm CutMix [elem]", 5.0),
]


def head_to_head(fns: dict, device: str, budget_s: float) -> list[dict]:
    """Each pair of :data:`TARGETS` timed round-robin with only each other: in the full
    round-robin every call meets caches that the 25 other entries have just filled, which
    charges a per-call cost (tens of microseconds per small torch op when cold) that
    depends on the neighbours; a pair alone meets the same conditions. Reported: the ratio
    of the best times, and the median over rounds of the ratio within each round (the two
    calls of a round meet the same load: the statistic least moved by the machine's noise,
    and the one the target is judged on)."""
    out = []
    for ours, peer, target in TARGETS:
        t = round_robin({ours: fns[ours], peer: fns[peer]}, device, rounds=400, budget_s=2 * budget_s)
        speedup = t[peer].best / t[ours].best
        paired = statistics.median(p / o for p, o in zip(t[peer].wall, t[ours].wall))
        out.append(
            {
                "ours": ours,
                "peer": peer,
                "ours_s": t[ours].best,
                "peer_s": t[peer].best,
                "speedup": speedup,
                "paired_speedup": paired,
                "rounds": len(t[ours].wall),
                "target": target,
                "met": paired >= target,
            }
        )
    return out


def run(sizes, batch: int, device: str, budget_s: float, threads: int, ref_batch: int = 16) -> dict:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    num_classes = 100
    results = {
        "device": device,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "loadavg_start": os.getloadavg(),
        "sizes": {},
    }
    for size in sizes:
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, num_classes, (batch,), device=device)
        model = reference_model(num_classes).to(device)
        # At large sizes on a CPU one full-batch step takes minutes: time ref_batch images
        # and scale linearly (convolution cost is linear in the batch size).
        nb = batch if size <= 64 or device != "cpu" else min(batch, ref_batch)
        step = reference_step(model, x[:nb], y[:nb])
        ref = best_time(step, device, budget_s, max_reps=10 if size <= 64 else 3) * batch / nb
        fns = {}
        for lam_mode in ("batch", "elem"):
            for name, mixer in our_mixers(lam_mode).items():
                if name == "Vanilla" and lam_mode == "elem":
                    continue
                fns[f"{name} [{lam_mode}]"] = functools.partial(mixer, x, y)
        x_inplace = x.clone()  # in-place mixers (ours with inplace=True, timm) reuse a copy
        for lam_mode in ("batch", "elem"):
            for name, cls in (("Mixup", M.Mixup), ("CutMix", M.CutMix)):
                fns[f"{name} inplace [{lam_mode}]"] = functools.partial(
                    cls(alpha=1.0, inplace=True, lam_mode=lam_mode), x_inplace, y
                )
        for name, peer in peer_mixers(num_classes).items():
            fns[name] = functools.partial(peer, x_inplace, y)
        rows = round_robin(fns, device, rounds=200, budget_s=budget_s * len(fns))
        results["sizes"][size] = {
            "reference_fwd_bwd_s": ref,
            "reference_batch_timed": nb,
            "mixers": {
                k: {"s": v.best, "ratio": v.best / ref, "median_s": v.median, "rounds": len(v.wall)}
                for k, v in rows.items()
            },
            "head_to_head": head_to_head(fns, device, budget_s),
        }
        print(f"# {size}x{size}: reference fwd+bwd {ref * 1e3:.1f} ms", flush=True)
    results["loadavg_end"] = os.getloadavg()
    return results


def markdown(results: dict) -> str:
    sizes = list(results["sizes"])
    head = "| method [lam_mode] | " + " | ".join(f"{s}px ms | {s}px ratio" for s in sizes) + " |"
    sep = "|---|" + "---:|---:|" * len(sizes)
    names = list(results["sizes"][sizes[0]]["mixers"])
    lines = [head, sep]
    for n in names:
        cells = []
        for s in sizes:
            r = results["sizes"][s]["mixers"][n]
            cells.append(f"{r['s'] * 1e3:.2f} | {r['ratio']:.4f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Head to head (each pair timed round-robin alone; speed-up = peer / ours; best: "
        "of the best times; paired: median over rounds of the within-round ratio):",
        "",
        "| ours | peer | "
        + " | ".join(
            f"{s}px ours ms | {s}px peer ms | {s}px best speed-up | {s}px paired speed-up" for s in sizes
        )
        + " | target |",
        "|---|---|" + "---:|---:|---:|---:|" * len(sizes) + "---:|",
    ]
    for k, pair in enumerate(results["sizes"][sizes[0]]["head_to_head"]):
        cells = []
        for s in sizes:
            r = results["sizes"][s]["head_to_head"][k]
            cells.append(
                f"{r['ours_s'] * 1e3:.2f} | {r['peer_s'] * 1e3:.2f} | "
                f"{r['speedup']:.2f}x | "
                f"{r['paired_speedup']:.2f}x{'' if r['met'] else ' (missed)'}"
            )
        lines.append(
            f"| {pair['ours']} | {pair['peer']} | " + " | ".join(cells) + f" | >= {pair['target']:g}x |"
        )
    refs = ", ".join(f"{s}px {results['sizes'][s]['reference_fwd_bwd_s'] * 1e3:.0f} ms" for s in sizes)
    lines.append("")
    scaled = [s for s in sizes if results["sizes"][s]["reference_batch_timed"] != results["batch"]]
    note = (
        (
            f" ({', '.join(f'{s}px' for s in scaled)}: timed on "
            f"{results['sizes'][scaled[0]]['reference_batch_timed']} images and scaled "
            "linearly)"
        )
        if scaled
        else ""
    )
    lines.append(
        f"Reference forward+backward (width-16 CIFAR ResNet-18, batch {results['batch']}){note}: "
        f"{refs}; device {results['device']}, {results['threads']} threads, "
        f"torch {results['torch']}; load average (1/5/15 min) at start "
        f"{'/'.join(f'{v:.1f}' for v in results['loadavg_start'])}, at end "
        f"{'/'.join(f'{v:.1f}' for v in results['loadavg_end'])}."
    )
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """One PNG: each mixer's cost as a percentage of a training step (left, one bar per image
    size) and the head-to-head speed-ups against the targets (right, paired ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["sizes"])
    names = list(results["sizes"][sizes[0]]["mixers"])
    pairs = results["sizes"][sizes[0]]["head_to_head"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 0.3 * len(names) + 2), gridspec_kw={"width_ratios": [3, 2]}
    )
    height = 0.8 / len(sizes)
    for k, size in enumerate(sizes):
        rows = results["sizes"][size]
        ys = [i + k * height for i in range(len(names))]
        left.barh(ys, [100 * rows["mixers"][n]["ratio"] for n in names], height=height, label=f"{size} px")
        ys = [i + k * height for i in range(len(pairs))]
        right.barh(ys, [p["paired_speedup"] for p in rows["head_to_head"]], height=height, label=f"{size} px")
    offset = height * (len(sizes) - 1) / 2
    left.set_yticks([i + offset for i in range(len(names))], names, fontsize=8)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("time per call, % of one forward+backward of the reference model (log)")
    left.legend()
    right.set_yticks(
        [i + offset for i in range(len(pairs))], [f"{p['ours']}\nvs {p['peer']}" for p in pairs], fontsize=7
    )
    right.invert_yaxis()
    for i, p in enumerate(pairs):  # the target, across the pair's bars only
        right.plot(
            [p["target"]] * 2,
            [i - 0.6 * height, i + (len(sizes) - 0.4) * height],
            color="red",
            lw=1.5,
            ls="--",
            label="target" if i == 0 else None,
        )
    right.set_xlabel("speed-up, peer time / ours (paired median)")
    right.legend()
    fig.suptitle(
        f"bench/mixers.py: batch {results['batch']}, {results['device']}, "
        f"{results['threads']} thread(s), torch {results['torch']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of repeats per entry")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--ref-batch",
        type=int,
        default=16,
        help="on CPU, sizes > 64 px time the reference on this many images and scale to --batch",
    )
    parser.add_argument("--json", help="also write the raw numbers here")
    parser.add_argument("--plot", help="also draw them into this PNG")
    parser.add_argument(
        "--replot", metavar="JSON", help="draw --plot from the numbers of an earlier --json; run nothing"
    )
    args = parser.parse_args()
    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot PATH")
        plot(json.loads(Path(args.replot).read_text()), args.plot)
        return
    results = run(args.sizes, args.batch, args.device, args.budget, args.threads, args.ref_batch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    print(markdown(results))


if __name__ == "__main__":
    main()
