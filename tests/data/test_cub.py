import pytest
from mbtest.datasets import CUB_CLASSES, make_cub

from mixbench.data import CUB200, DatasetError


def test_classes_split_and_labels(fixture_roots):
    train, test = CUB200(fixture_roots["CUB200"], "train"), CUB200(fixture_roots["CUB200"], "test")
    assert train.classes == CUB_CLASSES and train.class_names[1] == "Laysan Albatross"
    assert (len(train), len(test)) == (6, 6)

    # image ids run 1..12 class by class; train_test_split.txt marks the even ids as train
    def ids(ds):
        return [int(ds.path(i).stem.rsplit("_", 1)[1]) - 1000 for i in range(len(ds))]

    assert ids(train) == [2, 4, 6, 8, 10, 12] and ids(test) == [1, 3, 5, 7, 9, 11]
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.path(2).parent.name == "002.Laysan_Albatross"
    assert tuple(train[0]["inputs"].shape) == (3, 12, 10)


@pytest.mark.parametrize(
    "missing", ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"]
)
def test_each_missing_list_file(tmp_path, missing):
    (make_cub(tmp_path) / missing).unlink()
    with pytest.raises(DatasetError, match=f"CUB_200_2011/{missing} not found: expected .*CUB_200_2011.tgz"):
        CUB200(tmp_path, "train")


def test_inconsistent_lists(tmp_path):
    folder = make_cub(tmp_path)
    lines = (folder / "train_test_split.txt").read_text().splitlines()
    (folder / "train_test_split.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match="train_test_split.txt: no entry for image id 12"):
        CUB200(tmp_path, "test")
    (folder / "images.txt").write_text("one images/x.jpg\n")
    with pytest.raises(DatasetError, match="images.txt: the id should be an integer, got 'one'"):
        CUB200(tmp_path, "test")


def test_official_counts(fixture_roots):
    with pytest.raises(DatasetError, match="lists 6 images, the official CUB200 'train' split has 5994"):
        CUB200(fixture_roots["CUB200"], "train", check_counts=True)
