"""tools/slurm_train.sh on the real single-node Slurm (tools/ci/start_slurm.sh): 2 srun tasks
training with gloo on the CPU."""

import os
import shutil
import subprocess
import sys

from mbtest.repo import REPO

from mixbench.results import load_result


def test_two_task_srun_training(tmp_path):
    assert shutil.which("srun") and subprocess.run(["sinfo"], capture_output=True).returncode == 0, (
        "Slurm is not running: start it with `sudo bash tools/ci/start_slurm.sh`"
    )
    wd = tmp_path / "slurm"
    env = dict(os.environ, GRES="", GPUS="2", CPUS_PER_TASK="1", PYTHON=sys.executable)
    proc = subprocess.run(
        [
            "bash",
            "tools/slurm_train.sh",
            "debug",
            "mixbench-test",
            str(REPO / "configs/digits/resnet8_mixup.yaml"),
            "--work-dir",
            str(wd),
            "--cfg-options",
            "train_cfg.max_epochs=1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = load_result(wd)
    assert r["status"] == "finished" and r["cost"]["num_devices"] == 2 and r["cost"]["iters"] == 11
