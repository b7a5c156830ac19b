"""How a run ends when it goes wrong (issue 17): a diverged run is recorded as failed with
the reason and the history so far; checkpoints stay within max_keep_ckpts across resumes;
torn temp files from a full disk are cleaned at the next start."""

import json
import re

from mbtest.repo import REPO, load_script

from mixbench.results import load_result
from mixbench.sweep.state import mark_ended, mark_launched, read_state

train_tool = load_script("tools/train.py")
DEMO = REPO / "configs/digits/resnet8_mixup.yaml"
TINY = [
    "train_dataloader.dataset.max_samples=128",
    "val_dataloader.dataset.max_samples=64",
    "model.backbone.width=8",
    "default_hooks.logger.interval=1",
]


def train(wd, *options, resume=False):
    args = [str(DEMO), "--work-dir", str(wd), "--cfg-options", *TINY, *options]
    return train_tool.main(args + (["--resume"] if resume else []))


def test_a_diverged_run_ends_failed_with_the_reason_and_the_history_so_far(tmp_path, capsys):
    # lr 0.05 for epoch 1, then 5e6: epoch 1 is validated, a later epoch diverges
    wd = tmp_path / "div"
    rc = train(
        wd,
        "train_cfg.max_epochs=5",
        "optim_wrapper.optimizer.lr=0.05",
        "train_dataloader.dataset.max_samples=256",
        "param_scheduler=[{type: MultiStepLR, milestones: [1], gamma: 1e8, by_epoch: true}]",
    )
    assert rc == 1
    assert "training failed: loss became" in capsys.readouterr().err
    result = load_result(wd)  # valid JSON: no NaN in the file
    assert result["status"] == "failed"
    assert result["error"]["kind"] == "diverged" and result["error"]["type"] == "DivergenceError"
    msg = result["error"]["message"]
    found = re.match(r"loss became (NaN|inf|-inf) at epoch (\d+), iteration (\d+) ", msg)
    assert found, msg
    epoch = int(found.group(2))
    assert 2 <= epoch <= 5 and 1 <= int(found.group(3)) <= 4
    # every epoch before the diverged one was validated and is kept
    assert [h["epoch"] for h in result["history"]] == list(range(1, epoch))
    assert result["metrics"]["epochs_done"] == epoch - 1 and result["metrics"]["top1_last"] is not None


def test_the_sweep_does_not_retry_a_diverged_run(tmp_path):
    wd = tmp_path / "run"
    wd.mkdir()
    failed = {
        "schema": 1,
        "status": "failed",
        "run": {k: 1 for k in ("name", "method", "dataset", "backbone", "epochs", "seed", "config_hash")},
        "metrics": {},
        "history": [],
        "cost": {},
        "env": {},
        "error": {"type": "DivergenceError", "message": "loss became NaN", "kind": "diverged"},
    }
    (wd / "result.json").write_text(json.dumps(failed))
    state = mark_ended(wd, mark_launched(wd, read_state(wd), "local"), 1, retries=5)
    assert state["status"] == "failed" and state["failures"] == 1
    assert state["failure_kind"] == "diverged" and state["attempts"][-1]["outcome"] == "diverged"
    failed["error"]["kind"] = "crashed"  # a crash is retried
    (wd / "result.json").write_text(json.dumps(failed))
    state = mark_ended(wd, mark_launched(wd, read_state(wd), "local"), 1, retries=5)
    assert state["status"] == "pending" and state["attempts"][-1]["outcome"] == "failed"


def test_max_keep_ckpts_holds_across_resumes_and_torn_temp_files_go(tmp_path):
    wd = tmp_path / "keep"
    assert train(wd, "train_cfg.max_epochs=2") == 0
    assert sorted(p.name for p in wd.glob("epoch_*.pth")) == ["epoch_2.pth"]
    # what a full disk (or a kill) mid-write leaves behind; the sweep's own temp file stays
    torn = [wd / ".epoch_3.pth.tmp", wd / ".result.json.x1y2.tmp", wd / ".last_checkpoint.a.tmp"]
    for p in torn:
        p.write_bytes(b"\0" * 10)
    (wd / ".sweep_state.json.z.tmp").write_text("{}")
    assert train(wd, "train_cfg.max_epochs=4", resume=True) == 0
    assert sorted(p.name for p in wd.glob("epoch_*.pth")) == ["epoch_4.pth"]
    assert not any(p.exists() for p in torn)
    assert (wd / ".sweep_state.json.z.tmp").exists()
    assert train(wd, "train_cfg.max_epochs=6", "default_hooks.checkpoint.max_keep_ckpts=2", resume=True) == 0
    assert sorted(p.name for p in wd.glob("epoch_*.pth")) == ["epoch_5.pth", "epoch_6.pth"]
    assert load_result(wd)["status"] == "finished"
