import pytest
from mbtest.datasets import CARS_CLASSES, make_stanford_cars

from mixbench.data import DatasetError, StanfordCars


def test_classes_counts_labels(fixture_roots):
    root = fixture_roots["StanfordCars"]
    train, test = StanfordCars(root, "train"), StanfordCars(root, "test")
    assert train.classes == CARS_CLASSES
    assert (len(train), len(test)) == (6, 3)
    # fixture: train image k (1-based) has class ((k - 1) % 3) + 1, test image k class (k % 3) + 1
    assert [train.path(i).name for i in range(2)] == ["00001.jpg", "00002.jpg"]
    assert train.labels.tolist() == [0, 1, 2, 0, 1, 2] and test.labels.tolist() == [1, 2, 0]
    assert test.path(0).parent.name == "cars_test"


def test_labelled_test_annotations_in_devkit(tmp_path):
    make_stanford_cars(tmp_path, test_annos_in_devkit=True)
    assert StanfordCars(tmp_path, "test").labels.tolist() == [1, 2, 0]


def test_missing_files(tmp_path):
    folder = make_stanford_cars(tmp_path)
    (folder / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(
        DatasetError,
        match="cars_test_annos_withlabels.mat not found: expected the "
        "labelled test annotations .*has no labels",
    ):
        StanfordCars(tmp_path, "test")
    (folder / "devkit" / "cars_meta.mat").unlink()
    with pytest.raises(DatasetError, match="cars_meta.mat not found: expected the 196 class names"):
        StanfordCars(tmp_path, "train")


def test_malformed_mat(tmp_path):
    from scipy.io import savemat

    folder = make_stanford_cars(tmp_path)
    savemat(str(folder / "devkit" / "cars_train_annos.mat"), {"boxes": [1, 2]})
    with pytest.raises(DatasetError, match="cars_train_annos.mat: no 'annotations' variable"):
        StanfordCars(tmp_path, "train")
    (folder / "devkit" / "cars_train_annos.mat").write_text("garbage")
    with pytest.raises(DatasetError, match="not a readable MATLAB .mat file"):
        StanfordCars(tmp_path, "train")


def test_official_counts(fixture_roots):
    with pytest.raises(DatasetError, match="'test' split has 8041"):
        StanfordCars(fixture_roots["StanfordCars"], "test", check_counts=True)
