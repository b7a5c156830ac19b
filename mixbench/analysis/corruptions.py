"""Common corruptions (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR 2019): the 15 CIFAR-10-C / ImageNet-C types at 5
severities, generated on the fly, and the released CIFAR-10-C / CIFAR-100-C arrays.

Each corruption maps a float image (H, W, C) in [0, 1] (C = 1 or 3) to one of the same shape
and range; ``corrupt`` applies it to uint8 batches (the images are quantized back to uint8,
as the released sets are). Randomness comes from ``numpy.random.default_rng([seed,
corruption, severity, index])``: the same image index, seed and setting always gives the
same corrupted image, whatever the batch.

Parameters are those of the CIFAR-10-C generator (``make_cifar_c.py``, severity 1..5),
written here from the published definitions:

=================  ==========================================================================
gaussian_noise     x + N(0, s^2), s = .04 .06 .08 .09 .10
shot_noise         Poisson(x * k) / k, k = 500 250 100 75 50
impulse_noise      salt-and-pepper on a fraction .01 .02 .03 .05 .07 of the values
defocus_blur       disk kernel radius .3 .4 .5 1 1.5, aliasing blur sigma .4 .5 .6 .2 .1
glass_blur         blur sigma .05 .25 .4 .25 .4; local pixel shuffle (max delta 1) 1 1 1 2 2
                   times; blur again
motion_blur        one-sided Gaussian line kernel (radius 10 10 10 10 12, sigma
                   1 1.5 2 2.5 3), angle ~ U(-45, 45) degrees
zoom_blur          mean of x and centre zooms 1, 1.01, ... up to 1.05 1.10 1.15 1.20 1.25
snow               snow layer N(loc, scale) zoomed, thresholded, motion-blurred, added with
                   its 180-degree rotation; image greyed toward max(x, 1.5 gray + .5)
frost              c0 * x + c1 * frost texture, (c0, c1) = (1, .2) (1, .3) (.9, .4) (.85, .4)
                   (.75, .45)
fog                x + c0 * plasma fractal (wibble decay c1), rescaled by max/(max + c0);
                   (c0, c1) = (.2, 3) (.5, 3) (.75, 2.5) (1, 2) (1.5, 1.75)
brightness         V channel of HSV + .05 .1 .15 .2 .3 (grey images: value + the same)
contrast           (x - mean) * c + mean, c = .75 .5 .4 .3 .15
elastic_transform  random affine (corner jitter .08 .07 .06 .05 .03 x size) then Gaussian-
                   smoothed displacement (alpha 0 .05 .08 .1 .1, sigma 0 .2 .06 .04 .03 x size)
pixelate           box-downsample to .95 .9 .85 .75 .65 of the size and box-upsample back
jpeg_compression   JPEG round trip at quality 80 65 58 50 40
=================  ==========================================================================

Spatial parameters (blur radii and sigmas, pixel-shuffle distance) are in CIFAR pixels and
are scaled by ``H / 32`` for larger images (kept as they are for smaller ones).
Deviations from the released generator: the frost texture is procedural (the generator
blends six frost photographs that are not redistributed with mixbench), motion blur is our
own kernel rather than ImageMagick's, and the affine part of elastic_transform uses SciPy
interpolation instead of OpenCV. Numbers on the generated sets are therefore close to, not
identical with, those on the released files; ``released_corruption_accuracy`` evaluates on
the released files when you have them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

SEVERITIES = (1, 2, 3, 4, 5)
NOISE = ("gaussian_noise", "shot_noise", "impulse_noise")
BLUR = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur")
WEATHER = ("snow", "frost", "fog", "brightness")
DIGITAL = ("contrast", "elastic_transform", "pixelate", "jpeg_compression")
CORRUPTIONS = NOISE + BLUR + WEATHER + DIGITAL


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect") if sigma > 0 else x


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.convolve(x[..., c], kernel, mode="reflect") for c in range(x.shape[-1])], -1)


def _gray(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 1:
        return x
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]


def _scale(x: np.ndarray) -> float:
    """Spatial parameters are in CIFAR pixels: scaled up for larger images, kept for
    smaller ones (a blur below one pixel would leave them untouched)."""
    return max(1.0, x.shape[0] / 32.0)


# ----------------------------------------------------------------------------- noise
def gaussian_noise(x, severity, rng):
    s = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return np.clip(x + rng.normal(0.0, s, x.shape), 0, 1)


def shot_noise(x, severity, rng):
    k = (500, 250, 100, 75, 50)[severity - 1]
    return np.clip(rng.poisson(x * k) / k, 0, 1)


def impulse_noise(x, severity, rng):
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    out = x.copy()
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


# ------------------------------------------------------------------------------ blur
def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """Normalized disk of ``radius`` pixels, smoothed by a Gaussian of ``alias_sigma``."""
    r = int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    k = ndimage.gaussian_filter(k / k.sum(), alias_sigma, mode="constant")
    return k / k.sum()


def defocus_blur(x, severity, rng):
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    s = _scale(x)
    return np.clip(_convolve(x, disk_kernel(radius * s, alias * s)), 0, 1)


def glass_blur(x, severity, rng):
    sigma, delta, iters = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[severity - 1]
    s = _scale(x)
    delta = max(1, int(round(delta * s)))
    out = _blur(x, sigma * s).copy()
    h, w = out.shape[:2]
    for _ in range(iters):  # swap each pixel with a random neighbour within +-delta
        shifts = rng.integers(-delta, delta, size=(h, w, 2))
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                di, dj = shifts[i, j]
                out[[i, i + di], [j, j + dj]] = out[[i + di, i], [j + dj, j]]
    return np.clip(_blur(out, sigma * s), 0, 1)


def motion_kernel(radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """One-sided line kernel: weight ``exp(-t^2 / (2 sigma^2))`` at distance t = 0..radius
    from the centre along ``angle_deg`` (the image is smeared in one direction)."""
    r = max(1, int(round(radius)))
    k = np.zeros((2 * r + 1, 2 * r + 1))
    a = np.deg2rad(angle_deg)
    for t in range(r + 1):
        k[r + int(round(t * np.sin(a))), r + int(round(t * np.cos(a)))] += np.exp(
            -t * t / (2 * sigma * sigma)
        )
    return k / k.sum()


def motion_blur(x, severity, rng):
    radius, sigma = ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3))[severity - 1]
    s = _scale(x)
    return np.clip(_convolve(x, motion_kernel(radius * s, max(sigma * s, 0.5), rng.uniform(-45, 45))), 0, 1)


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` >= 1, keeping the size (bilinear)."""
    h, w = x.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[top : top + ch, left : left + cw]
    zoomed = ndimage.zoom(crop, (h / ch, w / cw) + (1,) * (x.ndim - 2), order=1, mode="nearest")
    return zoomed[:h, :w]


def zoom_blur(x, severity, rng):
    top = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    zooms = np.arange(1, top, 0.01)
    acc = x.copy()
    for z in zooms:
        acc += clipped_zoom(x, z)
    return np.clip(acc / (len(zooms) + 1), 0, 1)


# --------------------------------------------------------------------------- weather
def snow(x, severity, rng):
    loc, scale, zoom, thresh, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    h, w = x.shape[:2]
    layer = clipped_zoom(rng.normal(loc, scale, (h, w, 1)), zoom)
    layer[layer < thresh] = 0
    s = _scale(x)
    layer = _convolve(
        np.clip(layer, 0, 1), motion_kernel(radius * s, max(sigma * s, 0.5), rng.uniform(-135, -45))
    )
    base = keep * x + (1 - keep) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return np.clip(base + layer + np.rot90(layer, 2), 0, 1)


def frost_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural ice texture in [0, 1]: bright crystal streaks (random short lines in
    random directions) over a soft cloudy base."""
    seeds = np.zeros((h, w))
    n = max(4, h * w // 24)
    seeds[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.uniform(0.5, 1.0, n)
    length = max(2, h // 8)
    streaks = sum(
        ndimage.convolve(seeds, motion_kernel(length, length, rng.uniform(0, 180)), mode="wrap")
        for _ in range(3)
    )
    cloud = ndimage.gaussian_filter(rng.random((h, w)), max(1.0, h / 16), mode="wrap")
    tex = streaks / (streaks.max() + 1e-12) + 0.6 * (cloud - cloud.min()) / (np.ptp(cloud) + 1e-12)
    return np.clip(tex / tex.max(), 0, 1)[..., None]


def frost(x, severity, rng):
    c0, c1 = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    return np.clip(c0 * x + c1 * frost_texture(x.shape[0], x.shape[1], rng), 0, 1)


def plasma_fractal(size: int, wibble_decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square fractal noise on a (size, size) torus (size a power of 2), in [0, 1];
    the random amplitude is divided by ``wibble_decay`` at each halving of the step."""
    if size & (size - 1):
        raise ValueError(f"size must be a power of 2, got {size}")
    grid = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        # square step: the centre of each square gets the mean of its corners + noise
        centre = (
            corners
            + np.roll(corners, -1, 0)
            + np.roll(corners, -1, 1)
            + np.roll(np.roll(corners, -1, 0), -1, 1)
        ) / 4
        grid[half:size:step, half:size:step] = centre + rng.uniform(-wibble, wibble, centre.shape)
        # diamond step: edge midpoints get the mean of their 4 neighbours + noise
        c = grid[0:size:step, 0:size:step]
        m = grid[half:size:step, half:size:step]
        top = (c + np.roll(c, -1, 1) + m + np.roll(m, 1, 0)) / 4  # (0, half) points
        left = (c + np.roll(c, -1, 0) + m + np.roll(m, 1, 1)) / 4  # (half, 0) points
        grid[0:size:step, half:size:step] = top + rng.uniform(-wibble, wibble, top.shape)
        grid[half:size:step, 0:size:step] = left + rng.uniform(-wibble, wibble, left.shape)
        step, wibble = half, wibble / wibble_decay
    grid -= grid.min()
    return grid / (grid.max() + 1e-12)


def fog(x, severity, rng):
    c0, c1 = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    h, w = x.shape[:2]
    size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
    top = x.max()
    out = x + c0 * plasma_fractal(size, c1, rng)[:h, :w, None]
    return np.clip(out * top / (top + c0), 0, 1)


def brightness(x, severity, rng):
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    if x.shape[-1] == 1:
        return np.clip(x + c, 0, 1)
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1)


# --------------------------------------------------------------------------- digital
def contrast(x, severity, rng):
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    mean = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - mean) * c + mean, 0, 1)


def elastic_transform(x, severity, rng):
    alpha, sigma, jitter = (
        (0, 0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    )[severity - 1]
    h, w = x.shape[:2]
    size = float(h)
    alpha, sigma, jitter = alpha * size, sigma * size, jitter * size
    # random affine: three points around the centre, each moved by U(-jitter, jitter)
    c, d = np.array([h / 2, w / 2]), min(h, w) / 3
    src = np.array([c + [-d, -d], c + [-d, d], c + [d, -d]])
    dst = src + rng.uniform(-jitter, jitter, src.shape)
    # output pixel p reads the input at A p + b, the inverse of the map src -> dst
    sol, *_ = np.linalg.lstsq(np.c_[dst, np.ones(3)], src, rcond=None)
    dy = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect") * alpha
        if sigma > 0
        else np.zeros((h, w))
    )
    dx = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect") * alpha
        if sigma > 0
        else np.zeros((h, w))
    )
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    py, px = yy + dy, xx + dx
    sy = sol[0, 0] * py + sol[1, 0] * px + sol[2, 0]
    sx = sol[0, 1] * py + sol[1, 1] * px + sol[2, 1]
    out = np.stack(
        [ndimage.map_coordinates(x[..., k], [sy, sx], order=1, mode="reflect") for k in range(x.shape[-1])],
        -1,
    )
    return np.clip(out, 0, 1)


def _pil(x: np.ndarray):
    from PIL import Image

    arr = np.round(x * 255).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def _from_pil(img, channels: int) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float64) / 255.0
    return arr[..., None] if channels == 1 else arr


def pixelate(x, severity, rng):
    from PIL import Image

    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[:2]
    small = _pil(x).resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
    return _from_pil(small.resize((w, h), Image.BOX), x.shape[-1])


def jpeg_compression(x, severity, rng):
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]
    buf = io.BytesIO()
    _pil(x).save(buf, "JPEG", quality=quality)
    return _from_pil(Image.open(io.BytesIO(buf.getvalue())), x.shape[-1])


CORRUPTION_FNS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    name: globals()[name] for name in CORRUPTIONS
}


def check_corruption(name: str, severity: int) -> None:
    if name not in CORRUPTION_FNS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")


def corrupt_image(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Corrupt one float image (H, W, C) in [0, 1]; returns float64 (H, W, C) in [0, 1]."""
    check_corruption(name, severity)
    out = CORRUPTION_FNS[name](np.asarray(image, dtype=np.float64), severity, rng)
    if out.shape != image.shape:
        raise AssertionError(f"{name} changed the shape {image.shape} -> {out.shape}")
    return out


def corrupt(
    images: Tensor, name: str, severity: int, seed: int = 0, indices: Sequence[int] | None = None
) -> Tensor:
    """Corrupt a uint8 batch (B, C, H, W) -> uint8 (B, C, H, W).

    Image ``i`` draws its randomness from ``default_rng([seed, k, severity, indices[i]])``
    (``k`` the corruption's position in CORRUPTIONS; ``indices`` default 0..B-1)."""
    check_corruption(name, severity)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    indices = range(len(images)) if indices is None else [int(i) for i in indices]
    k = CORRUPTIONS.index(name)
    arr = images.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255.0
    out = np.stack(
        [
            corrupt_image(img, name, severity, np.random.default_rng([seed, k, severity, i]))
            for img, i in zip(arr, indices)
        ]
    )
    return torch.from_numpy(np.round(out * 255).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()


def _accuracy_table(clean: float, results: dict) -> dict:
    per_corruption = {n: float(np.mean(list(s.values()))) for n, s in results.items()}
    mca = float(np.mean(list(per_corruption.values())))
    return {
        "summary": {"clean_top1": clean, "mca": mca, "mce_rel_clean": clean - mca},
        "per_corruption": per_corruption,
        "per_severity": {n: {str(k): v for k, v in s.items()} for n, s in results.items()},
    }


def corruption_accuracy(
    model,
    dataset,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 256,
    device=None,
) -> dict:
    """Top-1 (%) on the on-the-fly corrupted validation set, per corruption and severity.

    ``summary.mca`` is the mean corruption accuracy: the mean over corruptions of the mean
    over severities (Hendrycks & Dietterich's unnormalized mean; ``mce_rel_clean`` is the
    drop from the clean top-1)."""
    from .common import evaluate, top1

    for name in corruptions:
        for s in severities:
            check_corruption(name, s)
    clean = top1(*evaluate(model, dataset, batch_size, device))
    results: dict = {}
    for name in corruptions:
        for s in severities:
            logits, labels = evaluate(
                model,
                dataset,
                batch_size,
                device,
                transform=lambda idx, im, n=name, sv=s: corrupt(im, n, sv, seed, idx.tolist()),
            )
            results.setdefault(name, {})[s] = top1(logits, labels)
    out = _accuracy_table(clean, results)
    out.update(source="generated", seed=seed, num_samples=len(dataset))
    return out


class ReleasedCorruptionSet(torch.utils.data.Dataset):
    """One corruption at one severity of a released CIFAR-10-C / CIFAR-100-C folder:
    ``<root>/<corruption>.npy`` uint8 (5 N, H, W, C), severities 1..5 in consecutive blocks
    of N, and ``<root>/labels.npy`` (5 N,) (Hendrycks & Dietterich's release; N = 10000)."""

    def __init__(
        self, root: str | os.PathLike, corruption: str, severity: int, max_samples: int | None = None
    ):
        check_corruption(corruption, severity)
        root = Path(root)
        data_path, label_path = root / f"{corruption}.npy", root / "labels.npy"
        for p in (data_path, label_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"{p} not found: expected the released CIFAR-10-C/100-C layout "
                    f"<root>/<corruption>.npy and <root>/labels.npy (download from "
                    "https://zenodo.org/record/2535967 or /3555552 and unpack)"
                )
        data = np.load(data_path, mmap_mode="r")
        labels = np.load(label_path)
        if data.ndim != 4 or data.dtype != np.uint8 or len(data) % 5 or len(labels) != len(data):
            raise ValueError(
                f"{data_path}: expected uint8 (5 N, H, W, C) with N images per "
                f"severity and as many labels, got {data.dtype} {data.shape} and "
                f"{len(labels)} labels"
            )
        n = len(data) // 5
        stop = n if max_samples is None else min(n, max_samples)
        lo = (severity - 1) * n
        # np.array copies the block out of the read-only memory map
        self.images = torch.from_numpy(np.array(data[lo : lo + stop])).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(np.asarray(labels[lo : lo + stop]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": self.images[i], "data_samples": self.labels[i]}


def released_corruption_accuracy(
    model,
    root: str | os.PathLike,
    clean_dataset,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    batch_size: int = 256,
    device=None,
    max_samples: int | None = None,
) -> dict:
    """Like :func:`corruption_accuracy` on the released ``.npy`` files under ``root`` (every
    corruption that has a file there unless ``corruptions`` is given)."""
    from .common import evaluate, top1

    if corruptions is None:
        corruptions = [c for c in CORRUPTIONS if (Path(root) / f"{c}.npy").is_file()]
        if not corruptions:
            raise FileNotFoundError(f"no <corruption>.npy of the 15 CIFAR-C types in {root}")
    if not corruptions or not severities:
        raise ValueError(
            f"released_corruption_accuracy needs at least one corruption and one "
            f"severity, got {list(corruptions)} and {list(severities)}"
        )
    clean = top1(*evaluate(model, clean_dataset, batch_size, device))
    results: dict = {}
    for name in corruptions:
        for s in severities:
            ds = ReleasedCorruptionSet(root, name, s, max_samples)
            results.setdefault(name, {})[s] = top1(*evaluate(model, ds, batch_size, device))
    out = _accuracy_table(clean, results)
    out.update(source=f"released arrays in {root}", num_samples=len(ds))
    return out


def run_corruption(
    run,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 256,
    released_root: str | None = None,
) -> dict:
    """Corruption robustness of a loaded run; writes ``analysis/corruption.json``."""
    from .common import write_analysis

    if released_root:
        # the first len(run.dataset) images of each block: the same images as the clean
        # top-1 when --max-samples truncated the validation set (the released files keep
        # the test set's order)
        result = released_corruption_accuracy(
            run.model,
            released_root,
            run.dataset,
            corruptions,
            severities,
            batch_size,
            run.device,
            max_samples=len(run.dataset),
        )
    else:
        result = corruption_accuracy(
            run.model, run.dataset, corruptions, severities, seed, batch_size, run.device
        )
    result["json"] = str(write_analysis(run.work_dir, "corruption", result))
    return result
