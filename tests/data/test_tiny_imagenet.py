import pytest
import torch
from mbtest.datasets import TINY_WNIDS, make_tiny_imagenet

from mixbench.data import DatasetError, TinyImageNet


def test_classes_counts_and_labels(fixture_roots):
    root = fixture_roots["TinyImageNet"]
    train, val = TinyImageNet(root, "train"), TinyImageNet(root, "val")
    assert train.classes == sorted(TINY_WNIDS) and val.classes == train.classes
    assert train.class_names[0] == "goldfish, Carassius auratus"
    assert (len(train), len(val)) == (3 * 3, 3 * 2)
    # val_1.JPEG is annotated with TINY_WNIDS[1] in val_annotations.txt
    i = [p.name for p in map(val.path, range(len(val)))].index("val_1.JPEG")
    assert val.classes[int(val.labels[i])] == TINY_WNIDS[1]
    j = [p.name for p in map(train.path, range(len(train)))].index("n04067472_2.JPEG")
    assert train.classes[int(train.labels[j])] == "n04067472"
    assert val[0]["inputs"].shape == (3, 16, 16)


def test_in_memory_matches_disk_and_pipeline_fixes_size(fixture_roots):
    root = fixture_roots["TinyImageNet"]
    disk = TinyImageNet(root, "val")
    mem = TinyImageNet(root, "val", in_memory=True)
    assert torch.equal(mem[3]["inputs"], disk[3]["inputs"])
    crop = TinyImageNet(root, "train", pipeline=[{"type": "RandomResizedCrop", "size": 8}])
    assert crop[0]["inputs"].shape == (3, 8, 8) and crop[0]["inputs"].dtype == torch.uint8


def test_split_and_count_checks(fixture_roots):
    root = fixture_roots["TinyImageNet"]
    with pytest.raises(ValueError, match="'train', 'val'"):
        TinyImageNet(root, "test")
    with pytest.raises(DatasetError, match="lists 6 images, the official TinyImageNet 'val' split has 10000"):
        TinyImageNet(root, "val", check_counts=True)


@pytest.mark.parametrize("missing", ["wnids.txt", "words.txt", "val/val_annotations.txt"])
def test_missing_file_errors(tmp_path, missing):
    folder = make_tiny_imagenet(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(DatasetError, match=f"{missing} not found: expected .*tiny-imagenet-200.zip"):
        TinyImageNet(tmp_path, "val")


def test_malformed_and_unknown_annotations(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    ann = folder / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG n99999999\t1\t2\t3\t4\n")
    with pytest.raises(DatasetError, match=r"line 1: expected '<file name>\\t<wnid>"):
        TinyImageNet(tmp_path, "val")
    ann.write_text("val_0.JPEG\tn99999999\t1\t2\t3\t4\n")
    with pytest.raises(DatasetError, match="'n99999999', which wnids.txt does not list"):
        TinyImageNet(tmp_path, "val")


def test_missing_class_folder_and_image(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    (folder / "val" / "images" / "val_2.JPEG").unlink()
    val = TinyImageNet(tmp_path, "val")
    with pytest.raises(DatasetError, match="val_2.JPEG not found"):
        val[2]
    import shutil

    shutil.rmtree(folder / "train" / TINY_WNIDS[2])
    with pytest.raises(DatasetError, match=f"{TINY_WNIDS[2]} not found: expected the image folder"):
        TinyImageNet(tmp_path, "train")
