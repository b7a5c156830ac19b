"""Benchmark: does the input pipeline keep up with training? Images/s delivered by each
pipeline, against images/s that the reference model trains at, measured in the same run.

    python bench/data.py                              # CPU, loader workers = min(8, cores)
    python bench/data.py --device cuda --workers 8 --json out.json
    python bench/data.py --device cuda --decode-device cpu   # skip the GPU-decode row
    python bench/data.py --randaug                    # only the RandAugment policies' cost

Pipelines (each timed as the training loop consumes it: DataLoader iteration, then the
model's data preprocessor -- copy to the device, batched crop/flip, float + normalise):

- ``cifar_in_memory``: a 50,000 x 3 x 32 x 32 uint8 in-memory dataset (CIFAR's
  ``InMemoryDataset``), batch 100, RandomCropPad(4) + RandomFlip batched on the device.
- ``cifar_device_resident``: the same images held on the device, batches gathered by index
  (no loader, no copy): the bound a device-resident CIFAR loader can reach.
- ``jpeg_folder_224``: an ImageFolder of 500x375 JPEGs (ImageNet's typical size) decoded with
  torchvision.io, RandomResizedCrop(224) + flip per sample in the loader workers, batch 64.
- ``jpeg_folder_224_gpu_decode`` (with ``--decode-device cuda``, the default on CUDA): the
  same folder with ``decode_device: cuda``: each batch decoded at once by nvJPEG in the
  main process (no workers), RandomResizedCrop on the GPU.

Reference models (one ``train_step``: forward, mixed CE, backward, SGD update; inputs
already on the device): CIFAR ResNet-18 at 32 px, batch 100 (for the CIFAR pipelines) and
ResNet-50 at 224 px, batch 64 (for the JPEG pipeline), built from the benchmark configs.

The ratio ``pipeline img/s / model img/s`` is the headroom; the target is >= 3. On a CPU
the model is so slow that every ratio is large; the number that matters is the one taken
on the training GPU with its host's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import round_robin  # noqa: E402

from mixbench.config import load_config  # noqa: E402
from mixbench.method import resolve_method  # noqa: E402


def img_per_s(fn, images_per_call: int, device: str, calls: int, warmup: int = 1) -> float:
    """Images/s of ``calls`` consecutive calls of ``fn`` after ``warmup`` untimed ones
    (:func:`timing.round_robin` with one entry and one round; synchronised on CUDA)."""
    t = round_robin({"fn": fn}, device, rounds=1, min_rounds=1, calls=calls, warmup=warmup)
    return images_per_call / t["fn"].wall[0]


def build_model(config: str, device: str):
    from mmengine.optim import OptimWrapper

    import mixbench.data  # noqa: F401
    import mixbench.models  # noqa: F401
    from mixbench.registry import MODELS

    cfg = load_config(REPO / config)
    model = MODELS.build(resolve_method(cfg)["model"]).to(device).train()
    opt = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    return model, opt


def model_img_per_s(config: str, shape: tuple, batch: int, device: str, steps: int) -> float:
    """Training throughput of the config's model on a fixed uint8 batch already on device
    (its data preprocessor still runs: normalisation and batched augments)."""
    model, opt = build_model(config, device)
    num_classes = model.num_classes
    data = {
        "inputs": torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, device=device),
        "data_samples": torch.randint(0, num_classes, (batch,), device=device),
    }
    # one warm-up step (cuDNN autotune, allocator)
    return img_per_s(lambda: model.train_step(data, opt), batch, device, steps)


def loader_img_per_s(
    dataset, batch: int, workers: int, device: str, preprocess, batches: int, pin_memory: bool | None = None
) -> float:
    """Images/s of DataLoader iteration + the data preprocessor, after one warm-up epoch
    start (persistent workers already running)."""
    from torch.utils.data import DataLoader

    from mixbench.data.base import batch_collate

    pin = device.startswith("cuda") if pin_memory is None else pin_memory
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin,
        drop_last=True,
        collate_fn=batch_collate,
    )

    def forever():
        while True:
            yield from loader

    it = forever()  # batches are all full (drop_last); 2 warm-up batches: workers started
    return img_per_s(lambda: preprocess(next(it)), batch, device, batches, warmup=2)


def preprocessor(config: str, device: str):
    import mixbench.models  # noqa: F401
    from mixbench.registry import MODELS

    cfg = load_config(REPO / config)["model"]["data_preprocessor"]
    pre = MODELS.build({"type": "ClassifierDataPreprocessor", **cfg}).to(device)
    return lambda data: pre(data, training=True)


def cifar_pipelines(args) -> dict:
    from mixbench.data import InMemoryDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 100, (50_000,), generator=g)
    config = "configs/benchmarks/cifar100/resnet18_cifar_e200.yaml"
    pre = preprocessor(config, args.device)
    out = {
        "cifar_in_memory": loader_img_per_s(
            InMemoryDataset(images, labels, [str(i) for i in range(100)]),
            100,
            args.workers,
            args.device,
            pre,
            args.batches,
        )
    }
    resident, resident_labels = images.to(args.device), labels.to(args.device)

    def resident_batch():
        idx = torch.randint(0, resident.shape[0], (100,), device=args.device)
        pre({"inputs": resident[idx], "data_samples": resident_labels[idx]})

    out["cifar_device_resident"] = img_per_s(resident_batch, 100, args.device, args.batches)
    out["model_resnet18_cifar"] = model_img_per_s(config, (3, 32, 32), 100, args.device, args.steps)
    return out


def make_jpeg_folder(root: Path, n: int, classes: int = 8, hw=(375, 500)) -> None:
    """``n`` JPEGs of ``hw`` px: smooth colour gradients plus noise (compress like photos,
    not like pure noise), quality 90, in ``classes`` class folders."""
    from torchvision.io import encode_jpeg

    g = torch.Generator().manual_seed(0)
    h, w = hw
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    for i in range(n):
        a = torch.rand(3, 3, generator=g)
        img = a[:, 0, None, None] * 255 * yy + a[:, 1, None, None] * 255 * xx
        img = img + torch.randn(3, h, w, generator=g) * 12
        img = img.clamp(0, 255).to(torch.uint8)
        path = root / f"class{i % classes}" / f"{i:06d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(img, quality=90).numpy().tobytes())


JPEG_BATCH = 64


def jpeg_pipelines(args) -> dict:
    from mixbench.data import ImageFolder

    config = "configs/benchmarks/imagenet1k/resnet50_e100.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        make_jpeg_folder(Path(tmp) / "train", args.jpegs)
        pipeline = [{"type": "RandomResizedCrop", "size": 224, "interpolation": "bilinear"}]
        ds = ImageFolder(tmp, "train", use_index=False, pipeline=pipeline)
        pre = preprocessor(config, args.device)
        out = {
            "jpeg_folder_224": loader_img_per_s(ds, JPEG_BATCH, args.workers, args.device, pre, args.batches)
        }
        if args.decode_device == "cuda":
            gpu_ds = ImageFolder(tmp, "train", use_index=False, pipeline=pipeline, decode_device="cuda")
            out["jpeg_folder_224_gpu_decode"] = loader_img_per_s(
                gpu_ds, JPEG_BATCH, 0, args.device, pre, args.batches, pin_memory=False
            )
    out["model_resnet50_224"] = model_img_per_s(
        config, (3, 224, 224), JPEG_BATCH, args.device, max(1, args.steps // 4)
    )
    return out


def randaug_img_per_s(reps: int = 3) -> dict:
    """Images/s of each RandAugment policy on one thread (as in a loader worker), at 32 and
    224 px: the published policies against torchvision's RandAugment(2, 7)."""
    from torchvision.transforms import v2

    from mixbench.data import FixMatchRandAugment, TimmRandAugment

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    policies = {
        "torchvision_randaugment_2_7": v2.RandAugment(2, 7),
        "fixmatch_rand_m7_mstd0.5": FixMatchRandAugment(),
        "timm_rand_m9_mstd0.5_inc1": TimmRandAugment("rand-m9-mstd0.5-inc1"),
    }
    out = {}
    for size, n in ((32, 200), (224, 40)):
        imgs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g) for _ in range(n)]
        for t in policies.values():
            for img in imgs[:8]:  # warm-up
                t(img)
        times = round_robin(
            {name: (lambda t=t, imgs=imgs: [t(img) for img in imgs]) for name, t in policies.items()},
            rounds=reps,
            warmup=0,
        )
        out.update({f"{name}_{size}px": n / tm.best for name, tm in times.items()})
    torch.set_num_threads(threads)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--batches", type=int, default=40, help="batches timed per pipeline")
    p.add_argument("--steps", type=int, default=8, help="training steps timed (ResNet-50: / 4)")
    p.add_argument("--jpegs", type=int, default=512, help="images in the synthetic JPEG folder")
    p.add_argument(
        "--decode-device",
        choices=("cpu", "cuda"),
        default=None,
        help="cuda: also time the JPEG folder decoded on the GPU (default on CUDA)",
    )
    p.add_argument(
        "--randaug",
        action="store_true",
        help="only time the RandAugment policies (one thread, 32 and 224 px)",
    )
    p.add_argument("--json", help="write the numbers to this file")
    args = p.parse_args(argv)
    if args.randaug:
        r = randaug_img_per_s()
        for name, v in r.items():
            base = r["torchvision_randaugment_2_7_" + name.rsplit("_", 1)[1]]
            print(f"{name:38s} {v:8.0f} img/s  {v / base:5.2f}x torchvision's")
        if args.json:
            Path(args.json).write_text(json.dumps({"randaug_img_per_s": r}, indent=2))
        return 0
    if args.jpegs < JPEG_BATCH:  # the loader drops the last partial batch: none to time
        p.error(f"--jpegs must be at least one batch ({JPEG_BATCH}), got {args.jpegs}")
    if args.decode_device is None:
        args.decode_device = "cuda" if args.device.startswith("cuda") else "cpu"
    if args.decode_device == "cuda" and not torch.cuda.is_available():
        p.error("--decode-device cuda needs CUDA (none is available here)")
    torch.manual_seed(0)
    r = {**cifar_pipelines(args), **jpeg_pipelines(args)}
    rows = [
        ("cifar_in_memory", "model_resnet18_cifar"),
        ("cifar_device_resident", "model_resnet18_cifar"),
        ("jpeg_folder_224", "model_resnet50_224"),
    ]
    if "jpeg_folder_224_gpu_decode" in r:
        rows.append(("jpeg_folder_224_gpu_decode", "model_resnet50_224"))
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"device: {device}, {os.cpu_count()} CPU cores, {args.workers} loader workers, "
        f"torch {torch.__version__}"
    )
    print(f"{'pipeline':28s} {'img/s':>10s}  {'model':22s} {'img/s':>9s}  {'ratio':>7s}")
    ratios = {}
    for pipe, model in rows:
        ratios[pipe] = r[pipe] / r[model]
        print(
            f"{pipe:28s} {r[pipe]:10.0f}  {model:22s} {r[model]:9.1f}  {ratios[pipe]:6.1f}x"
            f"{'' if ratios[pipe] >= 3 else '  < 3x target'}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": device, "workers": args.workers, "img_per_s": r, "ratio": ratios}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
