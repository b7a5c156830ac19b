"""ImageFolder, the list-file dataset, the v2 transform pipeline, TransformedDataset and the
cached index."""

import json

import pytest
import torch
from mbtest.datasets import write_jpeg

from mixbench.data import (
    CUB200,
    DatasetError,
    ImageFolder,
    ListFileDataset,
    TinyImageNet,
    TransformedDataset,
    build_pipeline,
)
from mixbench.data.io import decode_file
from mixbench.registry import UnknownTypeError


@pytest.fixture
def folder_tree(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for c, name in enumerate(["cat", "dog", "zebra"]):
            for k in range(n):
                write_jpeg(tmp_path / split / name / f"{k}.jpg", 60 * c)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    write_jpeg(tmp_path / "train" / "dog" / "nested" / "x.JPEG", 60)  # recursive, any case
    return tmp_path


def test_image_folder(folder_tree):
    train = ImageFolder(folder_tree, "train")
    assert train.classes == ["cat", "dog", "zebra"] and len(train) == 7
    assert train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert train.path(4).relative_to(folder_tree).as_posix() == "train/dog/nested/x.JPEG"
    val = ImageFolder(folder_tree, "val", classes=["zebra", "cat"])  # fixed label order
    assert val.labels.tolist() == [0, 1] and val.path(0).parent.name == "zebra"
    with pytest.raises(DatasetError, match="test not found: expected a folder with one sub-folder"):
        ImageFolder(folder_tree, "test")


def test_list_file_dataset(folder_tree):
    (folder_tree / "meta").mkdir()
    (folder_tree / "meta" / "val.txt").write_text("zebra/0.jpg 2\ncat/0.jpg 0\n")
    (folder_tree / "meta" / "classes.txt").write_text("cat\ndog\nzebra\n")
    ds = ListFileDataset(
        folder_tree, "meta/val.txt", data_prefix="val", classes="meta/classes.txt", split="val"
    )
    assert ds.classes == ["cat", "dog", "zebra"] and ds.labels.tolist() == [2, 0]
    assert ds.path(0) == folder_tree / "val" / "zebra" / "0.jpg"
    assert ListFileDataset(folder_tree, "meta/val.txt", data_prefix="val").classes == ["0", "1", "2"]
    (folder_tree / "meta" / "val.txt").write_text("zebra/0.jpg\n")
    with pytest.raises(DatasetError, match="line 1: expected '<image path> <integer label>'"):
        ListFileDataset(folder_tree, "meta/val.txt")


def test_pipeline_builds_v2_transforms_by_name():
    pipe = build_pipeline(
        [
            {"type": "Resize", "size": 20, "interpolation": "bicubic"},
            {"type": "CenterCrop", "size": 16},
            {"type": "RandomHorizontalFlip", "p": 1.0},
        ]
    )
    img = torch.arange(3 * 20 * 30, dtype=torch.int64).remainder(256).to(torch.uint8).view(3, 20, 30)
    out = pipe(img)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert build_pipeline([]) is None
    with pytest.raises(UnknownTypeError, match="did you mean 'RandomResizedCrop'"):
        build_pipeline([{"type": "RandomResizeCrop", "size": 8}])
    with pytest.raises(ValueError, match="needs a 'type' key"):
        build_pipeline([{"size": 8}])


def test_decode_errors(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="bad.jpg: not a readable image"):
        decode_file(tmp_path / "bad.jpg")
    with pytest.raises(DatasetError, match="gone.jpg not found"):
        decode_file(tmp_path / "gone.jpg")
    grey = write_jpeg(tmp_path / "g.jpg")
    assert decode_file(grey).shape[0] == 3


def test_transformed_dataset_wraps_any_dataset(fixture_roots):
    ds = TransformedDataset(
        {"type": "CIFAR100", "root": str(fixture_roots["CIFAR100"]), "split": "test"},
        [{"type": "Resize", "size": [48, 48]}],
    )
    assert len(ds) == 4 and ds.num_classes == 100 and ds.metainfo["num_classes"] == 100
    item = ds[1]
    assert item["inputs"].shape == (3, 48, 48) and int(item["data_samples"]) == 8


def test_max_samples_spreads_over_the_list(fixture_roots):
    ds = CUB200(fixture_roots["CUB200"], "train", max_samples=3)
    assert len(ds) == 3 and ds.labels.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="max_samples must be positive"):
        CUB200(fixture_roots["CUB200"], "train", max_samples=0)


def test_cached_index_is_used_and_keyed(tmp_path):
    from mbtest.datasets import make_tiny_imagenet

    folder = make_tiny_imagenet(tmp_path)
    ds = TinyImageNet(folder, "train")
    assert not ds.index_used
    path = ds.write_index()
    assert (
        path.parent == folder / "mixbench_index" and json.loads(path.read_text())["key"]["split"] == "train"
    )
    (folder / "train" / "n01443537" / "images" / "n01443537_0.JPEG").unlink()
    cached = TinyImageNet(folder, "train")  # listed from the index: still 9 files
    assert cached.index_used and len(cached) == 9 and cached.class_names == ds.class_names
    assert len(TinyImageNet(folder, "train", use_index=False)) == 8
    assert not TinyImageNet(folder, "val").index_used  # other split, other key
    path.write_text("{broken")
    with pytest.raises(DatasetError, match="unreadable index.*tools/prepare_data.py index"):
        TinyImageNet(folder, "train")


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="the 'train' split lists no images"):
        ImageFolder(tmp_path, "train")
