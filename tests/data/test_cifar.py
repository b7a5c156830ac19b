"""The lead's CIFAR readers on miniature archives in the real python-pickle format."""

import pickle

import numpy as np
import pytest
import torch
from mbtest.datasets import make_cifar10, make_cifar100

from mixbench.data import CIFAR10, CIFAR100, DatasetError


def test_cifar10_classes_counts_and_labels(tmp_path):
    folder = make_cifar10(tmp_path, per_batch=4, n_test=6)
    train = CIFAR10(root=str(tmp_path), split="train")
    test = CIFAR10(root=str(folder), split="test")  # the folder itself works too
    assert train.classes[:3] == ["airplane", "automobile", "bird"] and train.num_classes == 10
    assert len(train) == 5 * 4 and len(test) == 6
    with open(folder / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    item = train[4]  # first image of data_batch_2
    assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.uint8
    assert torch.equal(item["inputs"].flatten(), torch.from_numpy(batch["data"][0]))
    assert int(item["data_samples"]) == batch["labels"][0]


def test_cifar100_fine_labels(tmp_path):
    make_cifar100(tmp_path, n_train=8, n_test=4)
    train, test = CIFAR100(str(tmp_path), "train"), CIFAR100(str(tmp_path), "test")
    assert train.num_classes == 100 and train.classes[7] == "fine_07"
    assert train.labels.tolist() == [(7 * k) % 100 for k in range(8)]
    assert test.labels.tolist() == [(7 * k + 1) % 100 for k in range(4)]


def test_cifar_missing_batch_names_the_file_and_source(tmp_path):
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3 not found.*cs.toronto.edu"):
        CIFAR10(str(tmp_path), "train")
    CIFAR10(str(tmp_path), "test")  # the test split does not need it


def test_cifar_malformed_batch(tmp_path):
    folder = make_cifar100(tmp_path)
    with open(folder / "test", "wb") as f:
        pickle.dump({"fine_labels": [0], "data": np.zeros((1, 100), np.uint8)}, f)
    with pytest.raises(DatasetError, match="N x 3072"):
        CIFAR100(str(tmp_path), "test")
    (folder / "meta").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="meta: not a readable CIFAR pickle"):
        CIFAR100(str(tmp_path), "train")


def test_a_label_outside_the_classes_names_the_folder_the_label_and_its_sample(tmp_path):
    folder = make_cifar10(tmp_path, per_batch=4, n_test=6)
    with open(folder / "data_batch_5", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["labels"][2] = 10  # CIFAR-10 has classes 0..9; sample 4 * 4 + 2 of the train split
    with open(folder / "data_batch_5", "wb") as f:
        pickle.dump(batch, f)
    match = r"cifar-10-batches-py: label 10 of sample 18 is outside 0\.\.9 \(1 such labels\)"
    with pytest.raises(DatasetError, match=match):
        CIFAR10(str(tmp_path), "train")
    with pytest.raises(DatasetError, match=match):  # also when max_samples leaves the label out
        CIFAR10(str(tmp_path), "train", max_samples=4)
    CIFAR10(str(tmp_path), "test")
