import shutil

import pytest
from mbtest.datasets import IMAGENET_WNIDS, imagenet_val_labels, make_imagenet

from mixbench.data import DatasetError, ImageNet, ImageNet100
from mixbench.data.imagenet import IMAGENET100_CLASSES, read_class_list


def labelled_files(ds):
    """{file name: WordNet id of its label}."""
    return {ds.path(i).name: ds.classes[int(ds.labels[i])] for i in range(len(ds))}


def test_train_folders_classes_and_labels(fixture_roots):
    ds = ImageNet(fixture_roots["ImageNet"], "train")
    assert ds.classes == sorted(IMAGENET_WNIDS) and len(ds) == 4 * 2
    files = labelled_files(ds)
    assert files["n02869837_2.JPEG"] == "n02869837" and files["n01440764_1.JPEG"] == "n01440764"


@pytest.mark.parametrize("layout", ["folders", "flat_meta", "flat_devkit"])
def test_val_layouts_agree(tmp_path, layout):
    """Class folders, a flat folder + meta/val.txt, and a flat folder + the devkit's
    ILSVRC2012_IDs (numbered in the devkit's own order) give every file the same class."""
    root = make_imagenet(tmp_path, n_val=2, val_layout=layout)
    ds = ImageNet(root, "val")
    expected = {f"ILSVRC2012_val_{k:08d}.JPEG": w for k, w in enumerate(imagenet_val_labels(2), 1)}
    assert labelled_files(ds) == expected
    assert ds.classes == sorted(IMAGENET_WNIDS)


def test_meta_list_files_and_devkit_names(tmp_path):
    root = make_imagenet(tmp_path, meta_lists=True, devkit=True)
    shutil.rmtree(root / "train" / "n01443537")  # the list file, not the folder, decides
    (root / "train" / "n01443537").mkdir()
    ds = ImageNet(root, "train")
    assert len(ds) == 8 and labelled_files(ds)["n01443537_1.JPEG"] == "n01443537"
    assert ds.class_names[ds.classes.index("n02869837")] == "bonnet, poke bonnet"


def test_class_list_restricts_and_relabels(fixture_roots):
    ds = ImageNet(fixture_roots["ImageNet"], "val", class_list=["n02869837", "n01443537"])
    assert ds.classes == ["n01443537", "n02869837"] and len(ds) == 4
    assert set(ds.labels.tolist()) == {0, 1}
    with pytest.raises(DatasetError, match="lacks, e.g. \\['n09999999'\\]"):
        ImageNet(fixture_roots["ImageNet"], "val", class_list=["n09999999"])


def test_imagenet100_cmc_list(fixture_roots):
    wnids = read_class_list(IMAGENET100_CLASSES)
    assert len(wnids) == len(set(wnids)) == 100 and wnids[0] == "n02869837"
    val = ImageNet100(fixture_roots["ImageNet100"], "val", check_counts=False)
    train = ImageNet100(fixture_roots["ImageNet100"], "train")
    assert val.num_classes == 100 and val.classes == sorted(wnids)
    assert len(train) == len(val) == 100  # the extra non-ImageNet-100 class is dropped
    assert "n01440764" not in train.classes
    with pytest.raises(DatasetError, match="official ImageNet100 'val' split has 5000"):
        ImageNet100(fixture_roots["ImageNet100"], "val", check_counts=True)


def test_flat_val_without_ground_truth(tmp_path):
    root = make_imagenet(tmp_path, val_layout="flat_meta")
    (root / "meta" / "val.txt").unlink()
    with pytest.raises(
        DatasetError,
        match="ILSVRC2012_validation_ground_truth.txt not found: "
        "expected the val ground truth.*image-net.org",
    ):
        ImageNet(root, "val")


def test_devkit_meta_missing(tmp_path):
    root = make_imagenet(tmp_path, val_layout="flat_devkit")
    (root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    with pytest.raises(DatasetError, match="meta.mat not found: expected the devkit's synsets"):
        ImageNet(root, "val")


def test_missing_train_folder_and_bad_list(tmp_path):
    root = make_imagenet(tmp_path, meta_lists=True)
    (root / "meta" / "train.txt").write_text("n01440764/n01440764_1.JPEG zero\n")
    with pytest.raises(DatasetError, match="label of n01440764/n01440764_1.JPEG should be an integer"):
        ImageNet(root, "train")
    (root / "meta" / "train.txt").write_text("n01440764/n01440764_1.JPEG 7\n")
    with pytest.raises(DatasetError, match="label 7 .* outside 0..3"):
        ImageNet(root, "train")
    shutil.rmtree(root / "train")
    (root / "meta" / "train.txt").unlink()
    with pytest.raises(DatasetError, match="train not found: expected the ImageNet train images"):
        ImageNet(root, "train")
