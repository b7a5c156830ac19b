#!/usr/bin/env python
"""Equivalence: does mixbench's engine train as well as a plain PyTorch loop?

Each method is trained twice per seed on the same recipe: once by mixbench's engine
(``build_runner`` on the shipped config files, what ``tools/train.py`` runs) and once by the
plain loop written out in this file (no mmengine, no registry, no mixbench mixer or
classifier). The recipe of both sides:

* Fashion-MNIST (the IDX files under /usr/share/datasets/fashion-mnist), the first
  ``--subset`` training images, the first ``--val-subset`` test images;
* ResNet-8 at width 16, greyscale (mixbench's ``ResNetCIFAR(depth=8, width=16,
  in_channels=1)`` module; the plain loop applies its own initialisation, ``--plain-init``:
  Kaiming-normal fan-out convolutions and unit/zero batch norms, as mixbench's backbones,
  by default), global average pooling, a linear layer (PyTorch's default initialisation on
  both sides);
* SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4 on every parameter, cosine to 0
  per iteration, batch 128 (the last, smaller batch kept), ``--epochs`` epochs;
* reflect-padding by 2 px, a random 28x28 crop and a horizontal flip (p 0.5) per image, on
  the uint8 batch, then normalisation by mean 72.94 and std 90.02;
* the method's published settings as the shipped method file gives them (configs/methods/);
  the plain loop reads the same numbers and refuses an option it does not implement.

The plain versions of the methods, written from the papers and docs/mixers.md /
docs/learnable.md:

* Mixup: ``lam ~ Beta(alpha, alpha)`` once per batch, a random permutation as partners,
  ``x = lam x + (1 - lam) x[perm]``, loss ``lam CE(y) + (1 - lam) CE(y[perm])``.
* CutMix: one box per batch of side ``int(28 sqrt(1 - lam))`` centred on a uniform pixel,
  spanning ``[c - cut // 2, c + (cut + 1) // 2)`` clipped to the image (mixbench's and
  timm's convention, see mixbench/mixers/boxes.py); lam is the area left after clipping.
* SaliencyMix: as CutMix, but each image's box is centred on the peak of the fine-grained
  static saliency (OpenCV's ``cv2.saliency.StaticSaliencyFineGrained``, as the official
  code) of its partner, computed on the partner's augmented uint8 image; lam per image from
  its clipped box. (mixbench computes the same map in PyTorch from the normalised batch,
  each image first stretched to 0..255: equal for an image that spans 0..255.)
* AutoMix: the step of docs/learnable.md, written here with mixbench's ``PixelMixBlock``
  module (the Mix Block's forward) and everything else plain: two lambdas and two
  permutations, the EMA encoder's stage features, the classifier's loss on the detached
  mask's mix, the clean-batch loss of a second head, the Mix Block's loss through the EMA
  encoder and head, the L1 mask loss; one backward, one SGD step, then the EMA update with
  the momentum schedule, and the Mix Block's own cosine learning rate.

Reported per method: the final top-1 of each side (the last epoch, the model itself: no
EMA), the difference engine - plain with its 95% Welch confidence interval over seeds
(each side's seeds are independent runs), and the speed ratio: training images per second
of wall time (and of process CPU time, which other processes on a busy machine distort
less) of the engine over the plain loop, from the epochs after the first (the first is a
warm-up; with one epoch, that epoch), measured in the same process, the engine and the
plain run of a seed back to back (which one goes first alternates). Validation time is not
in either number.

    python bench/equivalence.py --epochs 3 --seeds 3 --subset 10000 --threads 1 \\
        --methods Vanilla Mixup CutMix SaliencyMix AutoMix --out equivalence.json
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from overhead import EpochTimer  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mixbench.config import get_path, load_config, merge_config, set_by_path  # noqa: E402
from mixbench.data.fashion_mnist import FILES, find_idx, read_idx  # noqa: E402
from mixbench.leaderboard.aggregate import welch_interval  # noqa: E402
from mixbench.method import resolve_method  # noqa: E402
from mixbench.models.backbones import ResNetCIFAR  # noqa: E402
from mixbench.models.classifiers.automix import PixelMixBlock  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
DATA_ROOT = "/usr/share/datasets/fashion-mnist"

# The recipe (module docstring). The engine's config must say the same: check_recipe.
BATCH, LR, MOMENTUM, WEIGHT_DECAY, NESTEROV = 128, 0.1, 0.9, 5e-4, True
PAD, FLIP_PROB = 2, 0.5
MEAN, STD = 72.94, 90.02
DEPTH, WIDTH, NUM_CLASSES = 8, 16, 10
VAL_BATCH = 1000

# method -> its method file under configs/methods/
METHODS = {
    "Vanilla": "vanilla.yaml",
    "Mixup": "mixup.yaml",
    "CutMix": "cutmix.yaml",
    "SaliencyMix": "saliencymix.yaml",
    "AutoMix": "automix.yaml",
}
PLAIN_INITS = ("kaiming", "torch")


# ---------------------------------------------------------------------------------------
# The engine side
# ---------------------------------------------------------------------------------------
def engine_config(method: str, epochs: int, seed: int, subset: int | None, val_subset: int | None) -> dict:
    """The engine's config: the ResNet-8 model base, the method's file (its `method:`
    section), the Fashion-MNIST base, the short SGD cosine schedule and the runtime, then
    the recipe's overrides."""
    files = [
        "_base_/models/resnet8_w16_gray.yaml",
        f"methods/{METHODS[method]}",
        "_base_/datasets/fashion_mnist.yaml",
        "_base_/schedules/sgd_cosine_short.yaml",
        "_base_/runtime.yaml",
    ]
    cfg: dict = {}
    for name in files:
        part = load_config(CONFIGS / name)
        part.pop("_source_")
        cfg = merge_config(cfg, part)
    cfg = set_by_path(
        cfg,
        {
            "model.backbone": {"type": "ResNetCIFAR", "depth": DEPTH, "width": WIDTH, "in_channels": 1},
            "model.data_preprocessor.batch_augments": [
                {"type": "RandomCropPad", "padding": PAD, "padding_mode": "reflect"},
                {"type": "RandomFlip", "prob": FLIP_PROB},
            ],
            "train_cfg.max_epochs": epochs,
            "train_cfg.val_interval": epochs,
            "train_dataloader.dataset.max_samples": subset,
            "val_dataloader.dataset.max_samples": val_subset,
            "default_hooks.checkpoint.interval": epochs,
            "randomness.seed": seed,
        },
    )
    cfg["_source_"] = f"bench/equivalence.py ({method})"
    check_recipe(cfg)
    return cfg


def check_recipe(cfg: dict) -> None:
    """Refuse an engine config whose recipe differs from the plain loop's constants."""
    want = {
        "train_dataloader.batch_size": BATCH,
        "optim_wrapper.optimizer.type": "SGD",
        "optim_wrapper.optimizer.lr": LR,
        "optim_wrapper.optimizer.momentum": MOMENTUM,
        "optim_wrapper.optimizer.weight_decay": WEIGHT_DECAY,
        "optim_wrapper.optimizer.nesterov": NESTEROV,
        "model.data_preprocessor.mean": [MEAN],
        "model.data_preprocessor.std": [STD],
        "model.head": {"type": "LinearHead", "num_classes": NUM_CLASSES},
        "model.loss": {"type": "MixedCrossEntropy"},
        "model.neck": None,
    }
    for key, value in want.items():
        if get_path(cfg, key) != value:
            raise ValueError(
                f"the engine config sets {key} = {get_path(cfg, key)!r} but the plain "
                f"loop's recipe has {value!r}: change both (bench/equivalence.py)"
            )
    scheds = cfg.get("param_scheduler") or []
    if (
        len(scheds) != 1
        or scheds[0].get("type") != "CosineAnnealingLR"
        or scheds[0].get("eta_min", 0) != 0
        or not scheds[0].get("convert_to_iter_based")
    ):
        raise ValueError(
            f"the engine schedule {scheds!r} is not the plain loop's cosine to 0 per "
            "iteration: change both (bench/equivalence.py)"
        )


def run_engine(cfg: dict) -> dict:
    """Train ``cfg`` with mixbench's runner; final top-1 and per-epoch timings."""
    from mixbench.engine.runner import build_runner

    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix="equivalence_") as work_dir:
        runner = build_runner(copy.deepcopy(cfg), work_dir)
        runner.register_hook(timer, priority="VERY_HIGH")
        runner.train()
        result = json.loads((Path(work_dir) / "result.json").read_text())
    return {
        "top1": result["metrics"]["top1_last"],
        **timing_summary(timer.samples, timer.times, timer.cpu_times),
    }


# ---------------------------------------------------------------------------------------
# The plain side: reads the method's settings from the engine's config, nothing else
# ---------------------------------------------------------------------------------------
def _only(options: dict, allowed: set, where: str) -> dict:
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (closest known: {close[0]!r})" if close else ""
            raise ValueError(
                f"{where}: option {key!r} is not implemented by the plain loop of "
                f"bench/equivalence.py{hint}; implement it there or drop it"
            )
    return options


def plain_settings(cfg: dict, method: str) -> dict:
    """The method's settings for the plain loop, read from the engine's config; an option
    the plain loop does not implement is an error."""
    model = resolve_method(cfg)["model"]  # the model the engine builds (mixbench.method)
    if method == "AutoMix":
        if model.get("type") != "AutoMixClassifier":
            raise ValueError(f"AutoMix's config builds {model.get('type')!r}, expected AutoMixClassifier")
        recipe = {"type", "backbone", "head", "neck", "loss", "data_preprocessor"}
        options = _only(
            {k: v for k, v in model.items() if k not in recipe},
            {
                "alpha",
                "momentum",
                "mask_stage",
                "mask_loss",
                "lam_margin",
                "one_hot_weight",
                "mix_block_weight",
                "mix_block",
                "end_momentum",
                "momentum_start",
                "mix_block_lr",
                "mix_block_min_lr",
            },
            "method.classifier (AutoMix)",
        )
        block = dict(options.pop("mix_block", {}) or {})
        if block.pop("type", "PixelMixBlock") != "PixelMixBlock":
            raise ValueError("the plain AutoMix implements the PixelMixBlock only")
        settings = {
            "alpha": 2.0,
            "momentum": 0.999,
            "mask_stage": 3,
            "mask_loss": 0.1,
            "lam_margin": 0.08,
            "one_hot_weight": 1.0,
            "mix_block_weight": 1.0,
            "end_momentum": 0.999999,
            "momentum_start": 0.1,
            "mix_block_lr": None,
            "mix_block_min_lr": 0.0,
        }  # the classifier's defaults
        settings.update(options)
        settings["mix_block"] = block
        return settings
    mixer = dict(model.get("mixer") or {"type": "Vanilla"})
    if model["type"] != "MixupClassifier" or mixer.pop("type") != method:
        raise ValueError(f"{METHODS[method]} configures another method than {method}")
    return _only(mixer, {"alpha"} if method != "Vanilla" else set(), f"method.mixer ({method})")


def load_split(split: str, n: int | None) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels of the first ``n`` of a split."""
    root = Path(DATA_ROOT)
    images, labels = (read_idx(find_idx(root, stem)) for stem in FILES[split])
    images = torch.from_numpy(images[:n].copy())[:, None]
    return images, torch.from_numpy(labels[:n].astype(np.int64))


class PlainNet(nn.Module):
    """Backbone, global average pooling, linear classifier."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNetCIFAR(depth=DEPTH, width=WIDTH, in_channels=1)
        self.fc = nn.Linear(self.backbone.out_channels[-1], NUM_CLASSES)

    def features(self, x: Tensor, stages: int | None = None) -> Tensor:
        """The feature map after ``stages`` stages (all by default)."""
        x = self.backbone.stem(x)
        for stage in self.backbone.stages[:stages]:
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def plain_init(model: nn.Module, mode: str) -> None:
    """``kaiming``: convolutions ~ Kaiming normal (fan out, ReLU gain), batch norms weight 1
    and bias 0; ``torch``: PyTorch's default initialisation of the convolutions (Kaiming
    uniform with a = sqrt(5)). Linear layers keep PyTorch's default either way."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if mode == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                m.reset_parameters()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def augment(x: Tensor) -> Tensor:
    """Reflect-pad by PAD, crop a random window and flip with FLIP_PROB, per image; uint8
    in, uint8 out, in the standard (N, C, H, W) layout.

    The layout is set explicitly: the gathered crops come out with strides
    ``(HW, 1, W, 1)``, which for one channel PyTorch counts as contiguous *and* channels-last
    (``.contiguous()`` keeps them), and convolutions then run channels-last, about 20-30%
    faster here; a mixed batch built with indexing gets the standard strides again, so
    without this the methods would run on different layouts."""
    b, _, h, w = x.shape
    padded = F.pad(x.float(), (PAD,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * PAD + 1, (b,)), torch.randint(0, 2 * PAD + 1, (b,))
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    crops = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(b) < FLIP_PROB
    out = torch.where(flip[:, None, None, None], crops.flip(3), crops).to(torch.uint8)
    return out.clone(memory_format=torch.contiguous_format)


def mixed_ce(logits: Tensor, y_a: Tensor, y_b: Tensor, lam) -> Tensor:
    """``mean(lam CE(y_a) + (1 - lam) CE(y_b))``; lam a float or one per sample."""
    ce_a = F.cross_entropy(logits, y_a, reduction="none")
    ce_b = F.cross_entropy(logits, y_b, reduction="none")
    return (lam * ce_a + (1 - lam) * ce_b).mean()


def clipped(c: Tensor, cut: int, size: int) -> tuple[Tensor, Tensor]:
    """``[c - cut // 2, c + (cut + 1) // 2)`` clipped to ``[0, size)``."""
    return (c - cut // 2).clamp(0, size), (c + (cut + 1) // 2).clamp(0, size)


def paste(x: Tensor, perm: Tensor, cy: Tensor, cx: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Each image gets the box of its partner ``x[perm]`` centred at its (cy, cx); returns
    the mixed batch and each image's own share of pixels."""
    b, _, h, w = x.shape
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    y1, y2 = clipped(cy, cut_h, h)
    x1, x2 = clipped(cx, cut_w, w)
    rows, cols = torch.arange(h), torch.arange(w)
    inside = ((rows >= y1[:, None]) & (rows < y2[:, None]))[:, None, :, None] & (
        (cols >= x1[:, None]) & (cols < x2[:, None])
    )[:, None, None, :]
    own = 1 - ((y2 - y1) * (x2 - x1)).float() / (h * w)
    return torch.where(inside, x[perm], x), own


def saliency_peaks(images: Tensor) -> tuple[Tensor, Tensor]:
    """(row, col) of each uint8 image's fine-grained saliency peak (OpenCV)."""
    import cv2

    sal = cv2.saliency.StaticSaliencyFineGrained_create()
    peaks = []
    for img in images[:, 0].numpy():
        ok, smap = sal.computeSaliency(img)
        if not ok:
            raise RuntimeError("cv2 StaticSaliencyFineGrained failed on an image")
        peaks.append(int(np.argmax(smap)))
    peaks_t = torch.tensor(peaks)
    return peaks_t // images.shape[-1], peaks_t % images.shape[-1]


def mix_batch(method: str, s: dict, x8: Tensor, x: Tensor, y: Tensor):
    """(inputs, y_a, y_b, lam) for the hand-written mixers; x8 is the uint8 batch."""
    if method == "Vanilla":
        return x, y, y, 1.0
    b, _, h, w = x.shape
    lam = float(np.random.beta(s["alpha"], s["alpha"]))
    perm = torch.randperm(b)
    if method == "Mixup":
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam
    if method == "CutMix":
        cy, cx = torch.randint(0, h, (1,)).expand(b), torch.randint(0, w, (1,)).expand(b)
    else:  # SaliencyMix: the partner's peak
        rows, cols = saliency_peaks(x8)
        cy, cx = rows[perm], cols[perm]
    mixed, own = paste(x, perm, cy, cx, lam)
    return mixed, y, y[perm], own


def cosine(base: float, end: float, it: int, total: int) -> float:
    """``end + (base - end) (1 + cos(pi it / total)) / 2``."""
    return end + (base - end) * (1 + math.cos(math.pi * it / total)) / 2


class PlainAutoMix:
    """AutoMix's parts and its training step (docs/learnable.md), with mixbench's
    ``PixelMixBlock`` as the Mix Block."""

    def __init__(self, model: PlainNet, s: dict):
        self.s, self.model = s, model
        self.head_one = nn.Linear(model.fc.in_features, NUM_CLASSES)
        self.ema = copy.deepcopy(model).requires_grad_(False)  # encoder_k and head_k
        channels = model.backbone.out_channels[s["mask_stage"] - 1]
        self.block = PixelMixBlock(channels, **s["mix_block"])

    def param_groups(self) -> list:
        return [
            {"params": list(self.model.parameters()) + list(self.head_one.parameters())},
            {"params": list(self.block.parameters()), "mix_block": True},
        ]

    def train(self) -> None:
        for m in (self.model, self.head_one, self.ema, self.block):
            m.train()

    def step(self, x: Tensor, y: Tensor, opt: torch.optim.Optimizer, it: int, total: int) -> None:
        s = self.s
        lr = cosine(LR, 0.0, it, total)
        for group in opt.param_groups:
            group["lr"] = (
                cosine(s["mix_block_lr"], s["mix_block_min_lr"], it, total)
                if group.get("mix_block") and s["mix_block_lr"] is not None
                else lr
            )
        b, size = x.shape[0], x.shape[-2:]
        lam_mb, lam_bb = (float(v) for v in np.random.beta(s["alpha"], s["alpha"], 2))
        perm_mb, perm_bb = torch.randperm(b), torch.randperm(b)
        with torch.no_grad():
            feat = self.ema.features(x, s["mask_stage"])
            if min(lam_bb, 1 - lam_bb) <= s["lam_margin"]:
                mask_bb = torch.full((b, 1, *size), lam_bb)
            else:
                mask_bb = self.block(feat, perm_bb, lam_bb, size)
        mask_mb = self.block(feat, perm_mb, lam_mb, size)
        x_bb = mask_bb * x + (1 - mask_bb) * x[perm_bb]
        x_mb = mask_mb * x + (1 - mask_mb) * x[perm_mb]
        loss = mixed_ce(self.model(x_bb), y, y[perm_bb], lam_bb)
        loss = loss + s["mix_block_weight"] * mixed_ce(self.ema(x_mb), y, y[perm_mb], lam_mb)
        margin = self.block.mask_loss_margin
        loss = loss + s["mask_loss"] * F.relu((mask_mb.mean() - lam_mb).abs() - margin)
        if s["one_hot_weight"] > 0:
            clean = self.head_one(self.model.features(x).mean((2, 3)))
            loss = loss + s["one_hot_weight"] * F.cross_entropy(clean, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # EMA momentum: base for the first `start` of training, then cosine up to the end value
        m = (
            s["momentum"]
            if it < int(total * s["momentum_start"])
            else cosine(s["momentum"], s["end_momentum"], it, total)
        )
        with torch.no_grad():
            for k, q in zip(self.ema.parameters(), self.model.parameters()):
                k.mul_(m).add_(q, alpha=1 - m)


def run_plain(
    method: str, settings: dict, epochs: int, seed: int, subset: int | None, val_subset: int | None, init: str
) -> dict:
    """Train the plain loop; final top-1 and per-epoch timings."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    images, labels = load_split("train", subset)
    model = PlainNet()
    plain_init(model, init)
    automix = PlainAutoMix(model, settings) if method == "AutoMix" else None
    params = automix.param_groups() if automix else model.parameters()
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, nesterov=NESTEROV)
    n = images.shape[0]
    per_epoch = math.ceil(n / BATCH)
    total, it = epochs * per_epoch, 0
    samples, times, cpu_times = [], [], []
    for _ in range(epochs):
        model.train()
        if automix:
            automix.train()
        t0, c0 = time.perf_counter(), time.process_time()
        order = torch.randperm(n)
        for start in range(0, n, BATCH):
            idx = order[start : start + BATCH]
            x8, y = augment(images[idx]), labels[idx]
            x = (x8.float() - MEAN) / STD
            if automix:
                automix.step(x, y, opt, it, total)
            else:
                for group in opt.param_groups:
                    group["lr"] = cosine(LR, 0.0, it, total)
                inputs, y_a, y_b, lam = mix_batch(method, settings, x8, x, y)
                loss = mixed_ce(model(inputs), y_a, y_b, lam)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            it += 1
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        samples.append(n)
    return {"top1": evaluate(model, val_subset), **timing_summary(samples, times, cpu_times)}


@torch.no_grad()
def evaluate(model: nn.Module, val_subset: int | None) -> float:
    """Top-1 (%) on the first ``val_subset`` test images."""
    images, labels = load_split("test", val_subset)
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], VAL_BATCH):
        x = (images[start : start + VAL_BATCH].float() - MEAN) / STD
        correct += int((model(x).argmax(1) == labels[start : start + VAL_BATCH]).sum())
    return 100.0 * correct / images.shape[0]


# ---------------------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------------------
def timing_summary(samples: list, times: list, cpu_times: list) -> dict:
    """Images per wall and per CPU second over the epochs after the first (all, with one)."""
    keep = slice(1, None) if len(times) > 1 else slice(None)
    n = sum(samples[keep])
    return {
        "img_per_s": n / sum(times[keep]),
        "img_per_cpu_s": n / sum(cpu_times[keep]),
        "train_s": sum(times),
    }


def summarize(runs: list, methods: list) -> dict:
    """Per method: each side's top-1 values, their means, the difference engine - plain with
    its 95% Welch interval, and the speed ratios (mean of the per-seed ratios)."""
    out = {}
    for method in methods:
        side = {
            s: {r["seed"]: r for r in runs if r["method"] == method and r["side"] == s}
            for s in ("engine", "plain")
        }
        seeds = sorted(set(side["engine"]) & set(side["plain"]))
        if not seeds:
            continue
        eng = [side["engine"][k]["top1"] for k in seeds]
        pla = [side["plain"][k]["top1"] for k in seeds]
        diff, low, high = welch_interval(eng, pla)
        ratio = [side["engine"][k]["img_per_s"] / side["plain"][k]["img_per_s"] for k in seeds]
        ratio_cpu = [side["engine"][k]["img_per_cpu_s"] / side["plain"][k]["img_per_cpu_s"] for k in seeds]
        out[method] = {
            "seeds": seeds,
            "engine_top1": eng,
            "plain_top1": pla,
            "engine_mean": statistics.fmean(eng),
            "plain_mean": statistics.fmean(pla),
            "engine_std": statistics.stdev(eng) if len(eng) > 1 else None,
            "plain_std": statistics.stdev(pla) if len(pla) > 1 else None,
            "diff": diff,
            "ci95": [low, high],
            "speed_ratio": statistics.fmean(ratio),
            "speed_ratio_cpu": statistics.fmean(ratio_cpu),
            "speed_ratio_range": [min(ratio), max(ratio)],
            "engine_img_per_s": statistics.fmean(side["engine"][k]["img_per_s"] for k in seeds),
            "plain_img_per_s": statistics.fmean(side["plain"][k]["img_per_s"] for k in seeds),
        }
    return out


def markdown_table(summary: dict) -> str:
    def fmt(v, d=2):
        return "-" if v is None else f"{v:.{d}f}"

    lines = [
        "| method | seeds | engine top-1 (mean ± sd) | plain top-1 (mean ± sd) | "
        "engine - plain [95% CI] | speed engine / plain (wall; CPU) | engine, plain img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        lo, hi = s["ci95"]
        ci = f"[{fmt(lo)}, {fmt(hi)}]" if lo is not None else "(needs 2 seeds)"
        lines.append(
            f"| {method} | {len(s['seeds'])} | {fmt(s['engine_mean'])} ± {fmt(s['engine_std'])} | "
            f"{fmt(s['plain_mean'])} ± {fmt(s['plain_std'])} | {s['diff']:+.2f} {ci} | "
            f"{s['speed_ratio']:.2f}x; {s['speed_ratio_cpu']:.2f}x | "
            f"{s['engine_img_per_s']:.0f}, {s['plain_img_per_s']:.0f} |"
        )
    return "\n".join(lines)


def check_methods(names: list) -> list:
    for name in names:
        if name not in METHODS:
            close = difflib.get_close_matches(name, list(METHODS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"unknown method {name!r}{hint} (known: {', '.join(METHODS)})")
    return names


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=positive, default=3)
    p.add_argument("--seeds", type=positive, default=3, help="N seeds per method and side")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first-seed .. first-seed + N - 1 (to extend an earlier run)",
    )
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"of {', '.join(METHODS)}")
    p.add_argument(
        "--subset",
        type=positive,
        default=None,
        help="training images (the first N of the 60,000; default all)",
    )
    p.add_argument(
        "--val-subset",
        type=positive,
        default=None,
        help="test images (the first N of the 10,000; default all)",
    )
    p.add_argument("--threads", type=positive, default=1, help="torch CPU threads")
    p.add_argument(
        "--plain-init",
        choices=PLAIN_INITS,
        default="kaiming",
        help="convolution init of the plain loop (kaiming: as mixbench's backbones)",
    )
    p.add_argument("--out", help="write the runs and the summary here (JSON), after every run")
    args = p.parse_args(argv)
    args.methods = check_methods(args.methods)
    if args.first_seed < 0:
        p.error(f"--first-seed must be >= 0, got {args.first_seed}")
    if args.subset is not None and args.subset % BATCH == 1:
        p.error(
            f"--subset {args.subset} leaves a last batch of 1 image, which batch norm "
            "cannot train on; pick another size"
        )
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {
        "command": "python bench/equivalence.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": args.epochs,
        "subset": args.subset,
        "val_subset": args.val_subset,
        "threads": args.threads,
        "plain_init": args.plain_init,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "runs": [],
        "summary": {},
    }
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for i, method in enumerate(args.methods):
            cfg = engine_config(method, args.epochs, seed, args.subset, args.val_subset)
            settings = plain_settings(cfg, method)
            sides = {
                "engine": lambda cfg=cfg: run_engine(cfg),
                "plain": lambda method=method, settings=settings, seed=seed: run_plain(
                    method, settings, args.epochs, seed, args.subset, args.val_subset, args.plain_init
                ),
            }
            order = ["engine", "plain"] if (seed + i) % 2 == 0 else ["plain", "engine"]
            for side in order:
                torch.set_num_threads(args.threads)
                result = {"method": method, "seed": seed, "side": side, **sides[side]()}
                report["runs"].append(result)
                print(
                    f"[equivalence] {method} seed {seed} {side}: top-1 {result['top1']:.2f}, "
                    f"{result['img_per_s']:.0f} img/s",
                    file=sys.stderr,
                    flush=True,
                )
            report["summary"] = summarize(report["runs"], args.methods)
            if args.out:
                Path(args.out).write_text(json.dumps(report, indent=2))
    print(markdown_table(report["summary"]))
    return report


if __name__ == "__main__":
    main()
