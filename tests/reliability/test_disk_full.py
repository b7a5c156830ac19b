"""Fault injection: the disk fills up while a checkpoint is written. On a real small tmpfs
where the machine allows mounting (root in CI), else by making the checkpoint write fail
with ENOSPC half-way. No torn file stays, result.json records the failure, and once there
is space again the run completes."""

import errno
import subprocess
import uuid

import pytest
from mbtest.repo import REPO, load_script
from mmengine.fileio.backends.local_backend import LocalBackend

from mixbench.results import load_result

train_tool = load_script("tools/train.py")
DEMO = REPO / "configs/digits/resnet8_mixup.yaml"
# width 16: a ~650 kB checkpoint, which does not fit the 256 kB disk
ARGS = [
    "--cfg-options",
    "train_cfg.max_epochs=1",
    "train_dataloader.dataset.max_samples=128",
    "val_dataloader.dataset.max_samples=64",
]


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """(folder on a full-able disk, function that makes room)."""
    mnt = tmp_path / f"tmpfs_{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    try:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
            ).returncode
            == 0
        )
    except OSError:  # no mount(8) here
        mounted = False
    if mounted:

        def make_room():
            subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)

        yield mnt, make_room
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        return
    real_put = LocalBackend.put

    def put_until_full(self, obj, filepath):  # what a full disk does: half the bytes, ENOSPC
        with open(filepath, "wb") as f:
            f.write(obj[: len(obj) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(filepath))

    monkeypatch.setattr(LocalBackend, "put", put_until_full)
    yield mnt, lambda: monkeypatch.setattr(LocalBackend, "put", real_put)


def test_full_disk_during_a_checkpoint(small_disk):
    mnt, make_room = small_disk
    wd = mnt / "run"
    with pytest.raises(OSError) as info:
        train_tool.main([str(DEMO), "--work-dir", str(wd), *ARGS])
    assert info.value.errno == errno.ENOSPC
    assert not list(wd.glob(".*.tmp")) and not list(wd.glob("*.pth"))  # no torn checkpoint
    result = load_result(wd)
    assert result["status"] == "failed" and "No space left on device" in result["error"]["message"]
    make_room()
    assert train_tool.main([str(DEMO), "--work-dir", str(wd), "--resume", *ARGS]) == 0
    assert load_result(wd)["status"] == "finished" and (wd / "epoch_1.pth").is_file()
