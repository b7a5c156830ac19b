import json

import pytest
from mbtest.datasets import INAT_SPECIES, make_inaturalist

from mixbench.data import DatasetError, INaturalist2017, INaturalist2018


@pytest.mark.parametrize("cls,year", [(INaturalist2017, 2017), (INaturalist2018, 2018)])
def test_labels_follow_category_ids(fixture_roots, cls, year):
    root = fixture_roots[cls.__name__]
    train, val = cls(root, "train"), cls(root, "val")
    # category ids were assigned in reverse listing order: id 0 is the last species
    assert train.classes == [sp for _, sp in reversed(INAT_SPECIES)]  # 2018: from categories.json
    assert (len(train), len(val)) == (6, 3)
    for ds in (train, val):
        for i in range(len(ds)):
            assert ds.path(i).parent.name == ds.classes[int(ds.labels[i])]
    folder = "train_val_images" if year == 2017 else "train_val2018"
    assert train.path(0).relative_to(root).parts[0] == folder


def test_missing_and_malformed_json(tmp_path):
    folder = make_inaturalist(tmp_path, 2017)
    (folder / "val2017.json").unlink()
    with pytest.raises(DatasetError, match="val2017.json not found: expected the COCO-style .*inat_comp"):
        INaturalist2017(tmp_path, "val")
    (folder / "train2017.json").write_text("{not json")
    with pytest.raises(DatasetError, match="train2017.json: not valid JSON"):
        INaturalist2017(tmp_path, "train")
    (folder / "train2017.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="no \\['categories'\\] key"):
        INaturalist2017(tmp_path, "train")


def test_image_without_annotation(tmp_path):
    folder = make_inaturalist(tmp_path, 2018)
    data = json.loads((folder / "val2018.json").read_text())
    data["annotations"] = data["annotations"][1:]
    (folder / "val2018.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="has no annotation with a listed category"):
        INaturalist2018(tmp_path, "val")


def test_official_counts(fixture_roots):
    with pytest.raises(DatasetError, match="'val' split has 95986"):
        INaturalist2017(fixture_roots["INaturalist2017"], "val", check_counts=True)
