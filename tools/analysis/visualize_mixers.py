"""Draw what each mixer does to real images: one PNG grid, one row per method, one column
per sample, lambda (the weight of the sample's own label) printed above each image.

    python tools/analysis/visualize_mixers.py --dataset FashionMNIST \
        --methods Mixup CutMix SmoothMix SaliencyMix FMix GridMix ResizeMix \
        --out docs/img/mixers_fashion_mnist.png

``--dataset`` is a registered dataset type (FashionMNIST, Digits, CIFAR10, CIFAR100, ...,
built with ``--data-root`` when given) or a config file whose ``train_dataloader.dataset``
is used. ``--methods`` are registered mixer types (built with their class defaults, or
from configs/methods/<name>.yaml with ``--use-configs``). Methods that need a model get an
untrained width-16 CIFAR ResNet-18 (``--model`` to pass another model config); methods that
mix hidden features show the clean input, marked "(feature space)".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mixbench.mixers.base import BaseMixer  # noqa: E402


def load_images(dataset: str, data_root: str | None, num: int, seed: int):
    """(images float (N, C, H, W) in [0, 1], labels (N,), class names) drawn at random."""
    from mixbench.registry import DATASETS

    if dataset.endswith((".yaml", ".yml")):
        from mixbench.config import load_config

        cfg = dict(load_config(dataset)["train_dataloader"]["dataset"])
    else:
        cfg = {"type": dataset}
        if data_root:
            cfg["root"] = data_root
    ds = DATASETS.build(cfg)
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:num]
    items = [ds[int(i)] for i in pick]
    images = torch.stack([it["inputs"] for it in items]).float() / 255
    labels = torch.stack([torch.as_tensor(it["data_samples"]) for it in items]).long()
    return images, labels, list(getattr(ds, "classes", [str(i) for i in range(int(labels.max()) + 1)]))


def build_method(name: str, use_configs: bool, alpha: float | None = None) -> BaseMixer:
    """The mixer ``name``: from configs/methods/<name>.yaml with ``use_configs``, else with
    its class defaults; ``alpha`` overrides the alpha of mixers that take one."""
    import inspect

    from mixbench.registry import MIXERS, build_mixer

    path = ROOT / "configs" / "methods" / f"{name.lower()}.yaml"
    cfg = {"type": name}
    if use_configs and path.is_file():
        from mixbench.config import load_config

        cfg = dict(load_config(path)["method"].get("mixer") or {"type": "Vanilla"})
    cls = MIXERS.get(cfg["type"])
    if alpha is not None and cls is not None and "alpha" in inspect.signature(cls).parameters:
        cfg["alpha"] = alpha
    return build_mixer(cfg)


def default_model(in_channels: int, num_classes: int, model_cfg: str | None):
    from mixbench.registry import MODELS

    if model_cfg:
        from mixbench.config import load_config
        from mixbench.method import resolve_method

        cfg = resolve_method(load_config(model_cfg))["model"]
    else:
        cfg = {
            "type": "MixupClassifier",
            "backbone": {"type": "ResNetCIFAR", "depth": 18, "width": 16, "in_channels": in_channels},
            "head": {"type": "LinearHead", "num_classes": num_classes},
        }
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def render(images, labels, classes, rows, out_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    fig, axes = plt.subplots(
        len(rows) + 1, n, figsize=(1.25 * n + 1.2, 1.35 * (len(rows) + 1)), squeeze=False
    )

    def show(ax, img, text):
        img = img.clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(text, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])

    for j in range(n):
        show(axes[0, j], images[j], classes[int(labels[j])][:12])
    axes[0, 0].set_ylabel("input", fontsize=8)
    for i, (name, out) in enumerate(rows, start=1):
        for j in range(n):
            if out is None:
                show(axes[i, j], images[j], "")
                continue
            mixed = out.inputs[j].float()
            text = f"λ={float(out.lam[j]):.2f}" if out.stage_hook is None else "(feature space)"
            if int(out.index[j]) == j:  # a random permutation leaves about one in place
                text += " (self)"
            show(axes[i, j], mixed, text)
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="FashionMNIST")
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["Mixup", "CutMix", "SmoothMix", "SaliencyMix", "FMix", "GridMix", "ResizeMix"],
    )
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--use-configs",
        action="store_true",
        help="build methods from configs/methods/<name>.yaml (published alphas)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="override alpha of every method that takes one (e.g. 1.0 to see mid-range mixes)",
    )
    parser.add_argument("--model", default=None, help="config whose 'model' feeds model-based mixers")
    parser.add_argument("--out", default="mixers.png")
    args = parser.parse_args(argv)

    images, labels, classes = load_images(args.dataset, args.data_root, args.num_samples, args.seed)
    model = None
    rows = []
    for name in args.methods:
        mixer = build_method(name, args.use_configs, args.alpha)
        mixer.generator = torch.Generator().manual_seed(args.seed)
        if mixer.needs_model and model is None:
            model = default_model(images.shape[1], len(classes), args.model)
        with torch.no_grad() if not mixer.needs_model else torch.enable_grad():
            out = mixer(images, labels, model=model if mixer.needs_model else None)
        rows.append((name, out))
    out_path = Path(args.out)
    alpha = f", alpha {args.alpha:g}" if args.alpha is not None else ""
    render(
        images,
        labels,
        classes,
        rows,
        out_path,
        f"{args.dataset}: mixed images (λ = weight of the column's own label; "
        f"(self): paired with itself, so unmixed), seed {args.seed}{alpha}",
    )
    print(f"wrote {out_path}")
    return out_path


if __name__ == "__main__":
    main()
