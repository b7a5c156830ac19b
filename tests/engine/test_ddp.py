"""2-process DDP on CPU (gloo) through tools/dist_train.sh, and rank-0-only result writing."""

import os
import subprocess
from types import SimpleNamespace

from mbtest.repo import REPO

from mixbench.engine import hooks as hooks_mod
from mixbench.results import load_result
from mixbench.sweep.launch import free_port


def test_two_process_gloo_run_via_dist_train(tmp_path):
    wd = tmp_path / "ddp"
    env = dict(os.environ, PORT=str(free_port()), PYTHON=os.environ.get("PYTHON", "python"))
    import sys

    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        [
            "bash",
            "tools/dist_train.sh",
            str(REPO / "configs/digits/resnet8_mixup.yaml"),
            "2",
            "--work-dir",
            str(wd),
            "--cfg-options",
            "train_cfg.max_epochs=1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = load_result(wd)
    assert r["status"] == "finished" and r["cost"]["num_devices"] == 2
    # 1347 images over 2 ranks x 64 per rank: ceil(674 / 64) = 11 iterations per rank
    assert r["cost"]["iters"] == 11
    assert len(r["history"]) == 1 and r["history"][0]["top1"] > 0
    assert sorted(p.name for p in wd.glob("result*")) == ["result.json"]


def test_result_hook_writes_on_rank_zero_only(tmp_path, monkeypatch):
    hook = hooks_mod.ResultJsonHook(run={"name": "x"})
    runner = SimpleNamespace(work_dir=str(tmp_path))
    monkeypatch.setattr(hooks_mod, "is_main_process", lambda: False)
    hook.write(runner)
    assert not (tmp_path / "result.json").exists()
    monkeypatch.setattr(hooks_mod, "is_main_process", lambda: True)
    hook.write(runner)
    assert (tmp_path / "result.json").exists()


def test_safe_checkpoint_hook_deletes_old_checkpoint_only_after_saving(tmp_path):
    from collections import deque

    from mmengine.logging import MessageHub

    from mixbench.engine.hooks import SafeCheckpointHook

    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=1)
    hook.out_dir = str(tmp_path)
    hook.file_backend = __import__("mmengine").fileio.get_file_backend(str(tmp_path))
    hook.keep_ckpt_ids = deque([1], maxlen=1)
    (tmp_path / "epoch_1.pth").write_bytes(b"good")
    seen = []

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        seen.append((tmp_path / "epoch_1.pth").exists())  # the old one is still there
        (tmp_path / filename).write_bytes(b"new")

    runner = SimpleNamespace(
        work_dir=str(tmp_path),
        save_checkpoint=save_checkpoint,
        message_hub=MessageHub.get_instance("safe_ckpt_test"),
    )
    hook._save_checkpoint_with_step(runner, 2, meta={"epoch": 2})
    assert seen == [True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_2.pth", "last_checkpoint"]
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "epoch_2.pth")
    assert list(hook.keep_ckpt_ids) == [2]
