#!/usr/bin/env python
"""How well the local sweep pool keeps its slots busy, and what one launch costs.

Runs a sweep of ``--runs`` short real CPU trainings (digits, width-8 ResNet-8, ``--epochs``
epochs of ``--samples`` images) through ``tools/sweep.py run --slots N`` and reports:

- ``efficiency``: sweep wall time / (sum of the runs' process times / slots); 1.0 is a pool
  that never leaves a slot idle (target: <= 1.10);
- ``slot_gap_s``: time between one run's exit and the next launch on the same slot (the
  pool's own scheduling delay);
- ``slot_utilization``: sum of run times / (slots x span from the first launch to the last
  exit): the pool alone, without the sweep process's own start-up and the tail where one
  slot has finished its share and the other has not;
- ``launch_overhead_s``: process start to the first training iteration (result.json's
  first write happens in ``before_train``, right before iteration 1; polled every 20 ms),
  and that as a fraction of the run's process time; next to it, measured in the same run,
  the time a bare ``python -c "import torch"`` and ``import mixbench.engine.runner`` take
  (the floor of any launch on this machine).

    python bench/sweep.py --runs 8 --slots 2 --json /tmp/bench_sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixbench.sweep import load_sweep  # noqa: E402
from mixbench.sweep.state import read_state  # noqa: E402


def make_sweep(root: Path, runs: int, epochs: int, samples: int) -> Path:
    cfg = REPO / "configs"
    spec = {
        "name": "bench_sweep",
        "work_root": str(root / "work_dirs"),
        "base": [str(cfg / "_base_/schedules/sgd_cosine_short.yaml"), str(cfg / "_base_/runtime.yaml")],
        "axes": {
            "dataset": {"digits": str(cfg / "_base_/datasets/digits.yaml")},
            "backbone": {
                "resnet8_w8": {
                    "_base_": str(cfg / "_base_/models/resnet8_w16_gray.yaml"),
                    "model": {"backbone": {"width": 8}},
                }
            },
            "method": {"Mixup": {"type": "Mixup", "alpha": 1.0}},
            "max_epochs": [epochs],
            "seed": list(range(runs)),
        },
        "options": {
            "train_dataloader.dataset.max_samples": samples,
            "val_dataloader.dataset.max_samples": 128,
            "default_hooks.logger.interval": 50,
        },
    }
    path = root / "bench_sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def watch_first_writes(work_dirs, stop: threading.Event, seen: dict) -> None:
    """Record when each run's result.json first appears (its before_train write)."""
    while not stop.is_set():
        for wd in work_dirs:
            if wd not in seen and (wd / "result.json").exists():
                seen[wd] = time.time()
        time.sleep(0.02)


def import_time(module: str) -> float:
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        check=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )
    return time.time() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--json", type=Path, help="write the numbers here too")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        path = make_sweep(Path(tmp), args.runs, args.epochs, args.samples)
        sweep = load_sweep(path)
        dirs = [r.work_dir for r in sweep.runs]
        seen: dict = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch_first_writes, args=(dirs, stop, seen), daemon=True)
        watcher.start()
        t0 = time.time()
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "tools/sweep.py"),
                "run",
                str(path),
                "--slots",
                str(args.slots),
                "--no-ingest",
            ],
            capture_output=True,
            text=True,
        )
        wall = time.time() - t0
        stop.set()
        watcher.join()
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        attempts = [(read_state(wd), wd) for wd in dirs]
        run_s, overhead, by_slot = [], [], {}
        for st, wd in attempts:
            a = st["attempts"][-1]
            run_s.append(a["end"] - a["start"])
            overhead.append(seen[wd] - a["start"])
            by_slot.setdefault(st["slot"], []).append((a["start"], a["end"]))
        gaps = [
            nxt[0] - prev[1]
            for spans in by_slot.values()
            for prev, nxt in zip(sorted(spans), sorted(spans)[1:])
        ]
        ideal = sum(run_s) / args.slots
        starts = [st["attempts"][-1]["start"] for st, _ in attempts]
        ends = [st["attempts"][-1]["end"] for st, _ in attempts]
        span = max(ends) - min(starts)
        floor_torch, floor_engine = import_time("torch"), import_time("mixbench.engine.runner")
        out = {
            "runs": args.runs,
            "slots": args.slots,
            "epochs": args.epochs,
            "samples": args.samples,
            "sweep_wall_s": round(wall, 2),
            "sum_run_s": round(sum(run_s), 2),
            "ideal_wall_s": round(ideal, 2),
            "efficiency": round(wall / ideal, 3),
            "sweep_startup_s": round(min(starts) - t0, 2),
            "pool_span_s": round(span, 2),
            "slot_utilization": round(sum(run_s) / (args.slots * span), 3),
            "run_s_median": round(statistics.median(run_s), 2),
            "slot_gap_s_median": round(statistics.median(gaps), 3) if gaps else None,
            "slot_gap_s_max": round(max(gaps), 3) if gaps else None,
            "launch_overhead_s_median": round(statistics.median(overhead), 2),
            "launch_overhead_s_max": round(max(overhead), 2),
            "launch_overhead_fraction": round(statistics.median(o / r for o, r in zip(overhead, run_s)), 3),
            "import_torch_s": round(floor_torch, 2),
            "import_engine_s": round(floor_engine, 2),
        }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
