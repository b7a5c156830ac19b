import pytest
from mbtest.datasets import PLACES_CATEGORIES, make_places205

from mixbench.data import DatasetError, Places205


def test_classes_counts_labels(fixture_roots):
    root = fixture_roots["Places205"]
    train, val = Places205(root, "train"), Places205(root, "val")
    assert train.classes == ["abbey", "airport_terminal", "field/cultivated"] == val.classes
    assert (len(train), len(val)) == (6, 3)
    assert str(val.path(2).relative_to(root)) == (
        "data/vision/torralba/deeplearning/images256/f/field/cultivated/v00000000.jpg"
    )
    assert val.labels.tolist() == [0, 1, 2]
    assert val[2]["inputs"].shape == (3, 12, 10)


def test_leading_slash_in_list(tmp_path):
    folder = make_places205(tmp_path)
    csv = folder / "trainvalsplit_places205" / "val_places205.csv"
    csv.write_text("".join("/" + line + "\n" for line in csv.read_text().splitlines()))
    ds = Places205(tmp_path, "val")
    assert ds.classes[2] == "field/cultivated" and ds.path(0).is_file()


def test_missing_and_malformed_lists(tmp_path):
    folder = make_places205(tmp_path)
    csv = folder / "trainvalsplit_places205" / "val_places205.csv"
    csv.write_text(f"{PLACES_CATEGORIES[0]}/x.jpg\n")
    with pytest.raises(DatasetError, match="line 1: expected '<image path> <label>'"):
        Places205(tmp_path, "val")
    csv.write_text("abbey.jpg 0\n")
    with pytest.raises(DatasetError, match="should read '<letter>/<category>/<file>'"):
        Places205(tmp_path, "val")
    csv.write_text("a/abbey/x.jpg 0\nb/bar/y.jpg 2\n")
    with pytest.raises(DatasetError, match="labels should run 0..K-1 without gaps"):
        Places205(tmp_path, "val")
    csv.unlink()
    with pytest.raises(DatasetError, match="val_places205.csv not found: .*trainvalsplit_places205.tar.gz"):
        Places205(tmp_path, "val")


def test_official_counts(fixture_roots):
    with pytest.raises(DatasetError, match="'val' split has 20500"):
        Places205(fixture_roots["Places205"], "val", check_counts=True)
