import pytest
import torch
from mbtest.datasets import AIRCRAFT, AIRCRAFT_HW, make_aircraft

from mixbench.data import DatasetError, FGVCAircraft


def test_variant_classes_splits_and_labels(fixture_roots):
    root = fixture_roots["FGVCAircraft"]
    sizes = {s: len(FGVCAircraft(root, s)) for s in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 4, "val": 4, "trainval": 8, "test": 8}
    ds = FGVCAircraft(root, "trainval")
    assert ds.classes == [a[0] for a in AIRCRAFT]  # variants.txt order, '/' in names kept
    # the first image id (1000001) is the train image of variant 707-320
    assert ds.path(0).name == "1000001.jpg" and ds.classes[int(ds.labels[0])] == "707-320"
    assert ds.classes[int(ds.labels[3])] == "F/A-18"


def test_family_and_manufacturer_levels(fixture_roots):
    root = fixture_roots["FGVCAircraft"]
    fam = FGVCAircraft(root, "test", level="family")
    man = FGVCAircraft(root, "test", level="manufacturer")
    assert fam.classes == sorted({a[1] for a in AIRCRAFT})  # 'Boeing 707' holds a space
    assert man.classes == ["Airbus", "Boeing", "de Havilland"]
    assert [man.classes[int(y)] for y in man.labels[::2]] == [a[2] for a in AIRCRAFT]
    with pytest.raises(ValueError, match="level must be one of"):
        FGVCAircraft(root, "test", level="model")


def test_banner_is_cropped(fixture_roots):
    root = fixture_roots["FGVCAircraft"]
    cropped = FGVCAircraft(root, "test")[0]["inputs"]
    full = FGVCAircraft(root, "test", crop_banner=False)[0]["inputs"]
    h, w = AIRCRAFT_HW
    assert tuple(full.shape) == (3, h, w) and tuple(cropped.shape) == (3, h - 20, w)
    assert torch.equal(cropped, full[:, : h - 20])
    assert full[:, -20:].float().mean() > 240  # the white banner
    assert cropped.float().mean() < 40  # gone after cropping


def test_unknown_name_and_missing_files(tmp_path):
    folder = make_aircraft(tmp_path)
    (folder / "data" / "images_variant_test.txt").write_text("1000001 747-400\n")
    with pytest.raises(DatasetError, match="'747-400', which variants.txt does not list"):
        FGVCAircraft(tmp_path, "test")
    (folder / "data" / "images_variant_test.txt").unlink()
    with pytest.raises(
        DatasetError, match="images_variant_test.txt not found: expected .*fgvc-aircraft-2013b.tar.gz"
    ):
        FGVCAircraft(tmp_path, "test")
    (folder / "data" / "families.txt").unlink()
    with pytest.raises(DatasetError, match="families.txt not found: expected the family names"):
        FGVCAircraft(tmp_path, "train", level="family")


def test_official_counts(fixture_roots):
    with pytest.raises(DatasetError, match="'trainval' split has 6667"):
        FGVCAircraft(fixture_roots["FGVCAircraft"], "trainval", check_counts=True)
