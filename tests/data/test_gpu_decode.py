"""Batched JPEG decoding on a device (``decode_device``): the option's validation and the
batched path on the CPU everywhere; nvJPEG against libjpeg-turbo where CUDA exists."""

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.io import encode_jpeg, encode_png

from mixbench.data import DatasetError, ImageFolder
from mixbench.data.base import batch_collate
from mixbench.data.io import decode_batch, decode_file, resolve_decode_device


def photo(h, w, channels=3, seed=0):
    """Smooth gradients plus noise: compresses like a photo, not like flat grey."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    a = torch.rand(channels, 2, generator=g)
    img = 255 * (a[:, :1, None] * yy + a[:, 1:, None] * xx) / 2
    img = img + 10 * torch.randn(channels, h, w, generator=g)
    return img.clamp(0, 255).to(torch.uint8)


@pytest.fixture
def photo_tree(tmp_path):
    root = tmp_path / "train"
    files = []
    for k, (cls, hw) in enumerate([("a", (20, 30)), ("a", (24, 24)), ("b", (32, 16)), ("b", (18, 18))]):
        path = root / cls / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(photo(*hw, seed=k), quality=90).numpy().tobytes())
        files.append(path)
    grey = root / "c" / "grey.jpg"
    grey.parent.mkdir(parents=True)
    grey.write_bytes(encode_jpeg(photo(16, 20, channels=1, seed=9), quality=90).numpy().tobytes())
    png = root / "c" / "lossless.png"
    png.write_bytes(encode_png(photo(12, 14, seed=7)).numpy().tobytes())
    return tmp_path, files + [grey, png]


def test_decode_device_option_is_validated(photo_tree, monkeypatch):
    root, _ = photo_tree
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_decode_device(None) is None and resolve_decode_device("cpu") is None
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_decode_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        ImageFolder(root, "train", decode_device="cuda:0")
    with pytest.raises(ValueError, match="decode_device must be None, 'cpu', 'cuda'"):
        resolve_decode_device("gpu")
    with pytest.raises(ValueError, match="decode_device must be"):
        resolve_decode_device("meta")
    with pytest.warns(UserWarning, match="JPEGs are decoded on the CPU"):
        ds = ImageFolder(root, "train", decode_device="auto", use_index=False)
    assert ds.decode_device is None and torch.equal(ds[0]["inputs"], decode_file(ds.path(0)))


def test_in_memory_decodes_once_on_the_cpu_whatever_decode_device_says(photo_tree, monkeypatch):
    root, _ = photo_tree
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # 'cuda' passes validation
    ds = ImageFolder(root, "train", decode_device="cuda", in_memory=True, use_index=False)
    assert ds.decode_device is None
    items = ds.__getitems__([0, 2])  # per-sample CPU items from the cache, no device decode
    assert [torch.equal(it["inputs"], decode_file(ds.path(i))) for it, i in zip(items, [0, 2])] == [
        True,
        True,
    ]
    assert all(it["inputs"].device.type == "cpu" for it in items)


def test_batched_decode_equals_per_file_decode_on_cpu(photo_tree, tmp_path):
    _, files = photo_tree
    images = decode_batch(files, torch.device("cpu"))  # JPEGs in one call, the PNG alone
    assert [tuple(im.shape) for im in images] == [
        (3, 20, 30),
        (3, 24, 24),
        (3, 32, 16),
        (3, 18, 18),
        (3, 16, 20),
        (3, 12, 14),
    ]
    for path, img in zip(files, images):
        assert torch.equal(img, decode_file(path))
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(bytes([0xFF, 0xD8, 0xFF, 0xE0]) + b"garbage")
    with pytest.raises(DatasetError, match="truncated.jpg: not a readable image"):
        decode_batch([files[0], bad], torch.device("cpu"))
    with pytest.raises(DatasetError, match="gone.jpg not found"):
        decode_batch([tmp_path / "gone.jpg"], torch.device("cpu"))


def test_dataset_yields_whole_batches_from_the_decode_device(photo_tree):
    root, _ = photo_tree
    ds = ImageFolder(root, "train", use_index=False, pipeline=[{"type": "RandomResizedCrop", "size": 16}])
    ds.decode_device = torch.device("cpu")  # the device path's flow, run on the CPU
    loader = DataLoader(ds, batch_size=4, collate_fn=batch_collate, num_workers=0)
    batches = list(loader)
    assert [b["inputs"].shape for b in batches] == [(4, 3, 16, 16), (2, 3, 16, 16)]
    assert torch.cat([b["data_samples"] for b in batches]).tolist() == ds.labels.tolist()
    assert ds[5]["inputs"].shape == (3, 16, 16)
    plain = ImageFolder(root, "train", use_index=False)
    plain.decode_device = torch.device("cpu")
    mixed = plain.__getitems__([0, 1])  # different sizes: a list of samples
    assert [torch.equal(s["inputs"], decode_file(plain.path(i))) for i, s in enumerate(mixed)] == [True, True]
    with pytest.raises(RuntimeError, match="num_workers: 0"):
        next(iter(DataLoader(ds, batch_size=2, collate_fn=batch_collate, num_workers=1)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU JPEG decoding needs CUDA")
def test_gpu_decode_matches_cpu_decode(photo_tree):
    root, files = photo_tree
    images = decode_batch(files, torch.device("cuda"))
    for path, img in zip(files, images):
        cpu = decode_file(path)
        assert img.device.type == "cuda" and img.shape == cpu.shape
        diff = (img.cpu().float() - cpu.float()).abs()
        # nvJPEG and libjpeg-turbo differ in IDCT and chroma upsampling by a few levels
        assert diff.mean() < 1.5 and diff.max() <= 32
    ds = ImageFolder(
        root,
        "train",
        use_index=False,
        decode_device="cuda",
        pipeline=[{"type": "RandomResizedCrop", "size": 16}],
    )
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=batch_collate, num_workers=0)))
    assert batch["inputs"].is_cuda and batch["inputs"].shape == (4, 3, 16, 16)
