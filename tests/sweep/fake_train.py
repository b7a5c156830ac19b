#!/usr/bin/env python
"""A stand-in for tools/train.py in the sweep's unit tests (same CLI, no torch).

``fake_train.py CONFIG --work-dir DIR --resume auto``: "trains" ``train_cfg.max_epochs`` epochs
of ``fake.epoch_s`` seconds each, writing ``fake_ckpt`` (the last epoch done) after every epoch
and a valid result.json (running, then finished), resuming from ``fake_ckpt``. Config knobs:
``fake.fail_first: N`` exits 1 on its first N launches; ``fake.fail_always: true`` always;
``fake.die_by: SIGSEGV`` (any signal name) kills itself with that signal after its first epoch.
Every launch appends a line to ``fake_launches`` (start epoch and environment it saw).
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

from mixbench.fingerprint import backbone_settings, method_settings  # noqa: E402
from mixbench.results import SCHEMA_VERSION, atomic_write_json, summarize_history  # noqa: E402


def main() -> int:
    config, wd = Path(sys.argv[1]), Path(sys.argv[sys.argv.index("--work-dir") + 1])
    cfg = yaml.safe_load(config.read_text())
    fake = cfg.get("fake", {})
    epochs = cfg["train_cfg"]["max_epochs"]
    ckpt = wd / "fake_ckpt"
    start = int(ckpt.read_text()) if ckpt.exists() else 0
    launches = wd / "fake_launches"
    n = len(launches.read_text().splitlines()) if launches.exists() else 0
    with open(launches, "a") as f:
        f.write(
            json.dumps(
                {
                    "start_epoch": start,
                    "omp": os.environ.get("OMP_NUM_THREADS"),
                    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "port": os.environ.get("MASTER_PORT"),
                }
            )
            + "\n"
        )
    if fake.get("fail_always") or n < fake.get("fail_first", 0):
        print(f"fake failure on launch {n + 1}", file=sys.stderr)
        return 1
    meta = cfg.get("meta", {})
    history = [{"epoch": e, "top1": 10.0 * e, "top5": 50.0} for e in range(1, start + 1)]
    t0 = time.time()

    def write(status):
        atomic_write_json(
            wd / "result.json",
            {
                "schema": SCHEMA_VERSION,
                "status": status,
                "run": {
                    "name": meta.get("name"),
                    "method": meta.get("method"),
                    "dataset": meta.get("dataset"),
                    "backbone": meta.get("backbone"),
                    "epochs": epochs,
                    "seed": cfg.get("randomness", {}).get("seed", 0),
                    "config_hash": "sha256:fake",
                    "method_settings": method_settings(cfg),
                    "backbone_settings": backbone_settings(cfg),
                },
                "metrics": summarize_history(history),
                "history": history,
                "cost": {"wall_s": time.time() - t0},
                "env": {},
            },
        )

    write("running")
    for epoch in range(start + 1, epochs + 1):
        time.sleep(fake.get("epoch_s", 0.05))
        history.append({"epoch": epoch, "top1": 10.0 * epoch, "top5": 50.0})
        ckpt.write_text(str(epoch))
        write("running")
        if fake.get("die_by"):
            print(f"fake trainer: dying by {fake['die_by']}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), getattr(signal, fake["die_by"]))
    write("finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
