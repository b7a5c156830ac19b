from mbtest.datasets import make_cub
from mbtest.repo import load_script

prepare_data = load_script("tools/prepare_data.py")


def test_check_reports_counts_and_missing(tmp_path, capsys):
    folder = make_cub(tmp_path)
    assert prepare_data.main(["check", "cub200", str(tmp_path)]) == 1  # a miniature differs
    out = capsys.readouterr().out
    assert "train     DIFFERS  6 images (official 5994), 3 classes (official 200)" in out
    (folder / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0000_1005.jpg").unlink()
    (folder / "classes.txt").rename(folder / "classes.bak")
    assert prepare_data.main(["check", "cub200", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "train     MISSING" in out and "classes.txt not found" in out
    (folder / "classes.bak").rename(folder / "classes.txt")
    prepare_data.main(["check", "cub200", str(tmp_path)])
    out = capsys.readouterr().out
    assert "1 listed images are not on disk" in out and "Laysan_Albatross_0000_1005.jpg" in out


def test_index_writes_files_the_dataset_reads(fixture_roots, tmp_path, capsys):
    from mixbench.data import CUB200

    make_cub(tmp_path)
    assert prepare_data.main(["index", "cub200", str(tmp_path)]) == 0
    assert "train: 6 images, 3 classes ->" in capsys.readouterr().out
    assert CUB200(tmp_path, "test").index_used
    assert prepare_data.main(["index", "cifar10", str(fixture_roots["CIFAR10"])]) == 0
    assert "needs no index" in capsys.readouterr().out
    assert prepare_data.main(["check", "cifar100", str(fixture_roots["CIFAR100"])]) == 1
    assert "test      DIFFERS  4 images (official 10000), 100 classes" in capsys.readouterr().out


def test_unknown_dataset_name(capsys):
    assert prepare_data.main(["check", "cub", "/nowhere"]) == 2
    assert "did you mean cub200" in capsys.readouterr().err.lower()
