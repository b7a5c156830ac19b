"""Hooks: the result.json writer and per-epoch reseeding (exact resume)."""

from __future__ import annotations

import math
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size, is_main_process
from mmengine.hooks import Hook

import mixbench
from mixbench.checkpoint import UnsafeCheckpointError
from mixbench.engine.metrics import head_top1
from mixbench.registry import HOOKS
from mixbench.results import (
    FAILURE_CRASHED,
    FAILURE_DIVERGED,
    FAILURE_INTERRUPTED,
    FAILURE_REFUSED,
    RESULT_FILE,
    SCHEMA_VERSION,
    ResultFileError,
    atomic_write_json,
    atomic_write_text,
    json_safe,
    load_result,
    summarize_history,
)

from .compat import CheckpointHookBase

STATE_KEY = "mixbench_result"


class DivergenceError(FloatingPointError):
    """The training loss or a validation metric is not finite: the run diverged. Running it
    again with the same config and seed diverges again (the sweep does not retry it)."""


def _nonfinite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def failure_kind(exc: BaseException) -> str:
    """How a run ended, for result.json's ``error.kind``: ``diverged`` or ``refused`` (an
    unsafe checkpoint; both deterministic, not retried), ``interrupted`` (Ctrl-C / SIGINT)
    or ``crashed`` (anything else)."""
    if isinstance(exc, DivergenceError):
        return FAILURE_DIVERGED
    if isinstance(exc, UnsafeCheckpointError):
        return FAILURE_REFUSED
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return FAILURE_INTERRUPTED
    return FAILURE_CRASHED


def git_commit() -> str | None:
    """Short commit of the mixbench checkout, or None outside a git checkout."""
    root = Path(mixbench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    return {
        "mixbench": mixbench.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "git": git_commit(),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
    }


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def peak_memory_mb() -> float:
    """Peak accelerator memory allocated by torch, or the process's peak RSS on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


@HOOKS.register_module()
class ResultJsonHook(Hook):
    """Writes ``<work_dir>/result.json`` (schema in :mod:`mixbench.results`) atomically
    after every validation and at the end, on rank 0. Its state (history, cost counters)
    travels in checkpoints, so a resumed run continues the same record.

    Args:
        run: the run identity (name, method, dataset, backbone, epochs, seed, config,
            config_hash, work_dir).
        median_last_n: N of the median-of-last-N summary (OpenMixup reports N = 10).
    """

    priority = "LOW"

    def __init__(self, run: dict, median_last_n: int = 10):
        if int(median_last_n) <= 0:
            raise ValueError(f"result.median_last_n must be positive, got {median_last_n}")
        self.run_info = dict(run)
        self.n = int(median_last_n)
        self.history: list = []
        self.prior_wall = 0.0
        self.train_time = 0.0
        self.samples = 0
        self.iters = 0
        self._t_run = time.perf_counter()
        self._t_epoch = None
        self._loss_sum = 0.0
        self._loss_count = 0
        self._last_train_loss = None
        self.status = "running"
        self.error = None

    # -- bookkeeping ----------------------------------------------------------------------
    def wall_s(self) -> float:
        return self.prior_wall + time.perf_counter() - self._t_run

    def before_run(self, runner) -> None:
        self._t_run = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def before_train(self, runner) -> None:
        self.validate_resumed_epoch(runner)
        self.write(runner)

    def validate_resumed_epoch(self, runner) -> None:
        """A checkpoint is saved before its epoch's validation; a run killed in between
        resumes with no record of that validation. Run it now (same weights, so the same
        numbers the uninterrupted run got) when that epoch was due for one."""
        epoch = runner.epoch
        if epoch == 0 or any(h["epoch"] == epoch for h in self.history):
            return
        loop = runner.train_loop
        interval, begin = getattr(loop, "val_interval", 1), getattr(loop, "val_begin", 1)
        due = epoch >= begin and (epoch % interval == 0 or epoch == loop.max_epochs)
        if due and runner.val_loop is not None:
            runner.val_loop.run()

    def before_train_epoch(self, runner) -> None:
        self._t_epoch = time.perf_counter()
        self._loss_sum, self._loss_count = 0.0, 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if data_batch is not None:
            self.samples += int(data_batch["inputs"].shape[0]) * get_world_size()
        self.iters += 1
        if outputs and "loss" in outputs:
            loss = float(torch.as_tensor(outputs["loss"]).detach())
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"loss became {_nonfinite(loss)} at epoch {runner.epoch + 1}, iteration {batch_idx + 1} "
                    f"(iteration {runner.iter + 1} of the run): training diverged. Lower the "
                    "learning rate (optim_wrapper.optimizer.lr), add gradient clipping "
                    "(optim_wrapper.clip_grad: {max_norm: 5.0}) or check the data"
                )
            self._loss_sum += loss
            self._loss_count += 1

    def after_train_epoch(self, runner) -> None:
        if self._t_epoch is not None:
            self.train_time += time.perf_counter() - self._t_epoch
        self._last_train_loss = self._loss_sum / self._loss_count if self._loss_count else None

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        metrics = metrics or {}
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise DivergenceError(
                    f"validation metric {key} became {_nonfinite(value)} at epoch "
                    f"{runner.epoch}: training diverged"
                )
        entry = {
            "epoch": runner.epoch,
            "top1": metrics.get("top1"),
            "top5": metrics.get("top5"),
            "train_loss": self._last_train_loss,
            "lr": float(runner.optim_wrapper.get_lr()["lr"][0]),
            "wall_s": round(self.wall_s(), 3),
        }
        heads = head_top1(metrics)  # the learnable methods' other heads (metrics.py)
        if heads:
            entry["heads"] = heads
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]] + [entry]
        self.write(runner)

    def after_train(self, runner) -> None:
        self.status = "finished"
        self.write(runner)

    def mark_failed(self, runner, exc: BaseException) -> None:
        """Record the failure in result.json: status ``failed``, ``error`` (type, message,
        kind: see :func:`failure_kind`) and the history up to here. Never raises: values
        that JSON cannot hold (NaN) become null, and a write that fails (disk full) is
        reported on stderr without hiding the original error."""
        self.status = "failed"
        self.error = {"type": type(exc).__name__, "message": str(exc)[-2000:], "kind": failure_kind(exc)}
        try:
            if is_main_process():
                atomic_write_json(Path(runner.work_dir) / RESULT_FILE, json_safe(self.result(runner)))
        except Exception as e:  # noqa: BLE001 - the training error is the one to report
            print(
                f"mixbench: could not record the failure in {runner.work_dir}/{RESULT_FILE}: "
                f"{type(e).__name__}: {e}",
                file=sys.stderr,
            )

    # -- checkpoints --------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[STATE_KEY] = {
            "history": self.history,
            "wall_s": self.wall_s(),
            "train_time": self.train_time,
            "samples": self.samples,
            "iters": self.iters,
            "last_train_loss": self._last_train_loss,
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY)
        if not state:
            return
        epoch = checkpoint.get("meta", {}).get("epoch", 0)
        # The checkpoint of epoch k is saved before epoch k's validation: that entry (made
        # with exactly these weights) is in the result.json the interrupted run wrote.
        by_epoch = {h["epoch"]: h for h in state["history"]}
        previous = Path(runner.work_dir) / RESULT_FILE
        if previous.is_file():
            try:
                for h in load_result(previous)["history"]:
                    by_epoch.setdefault(h["epoch"], h)
            except ResultFileError:
                pass  # unreadable earlier record: keep what the checkpoint carries
        self.history = [by_epoch[e] for e in sorted(by_epoch) if e <= epoch]
        self.prior_wall = float(state["wall_s"])
        self._t_run = time.perf_counter()
        self.train_time = float(state["train_time"])
        self.samples = int(state["samples"])
        self.iters = int(state["iters"])
        self._last_train_loss = state.get("last_train_loss")  # for a re-run validation

    # -- output -------------------------------------------------------------------------
    def result(self, runner) -> dict:
        world = get_world_size()
        cost = {
            "wall_s": round(self.wall_s(), 3),
            "train_img_per_s": round(self.samples / self.train_time, 2) if self.train_time else None,
            "s_per_iter": round(self.train_time / self.iters, 6) if self.iters else None,
            "peak_mem_mb": round(peak_memory_mb(), 1),
            "device": device_name(),
            "num_devices": world,
            "iters": self.iters,
        }
        out = {
            "schema": SCHEMA_VERSION,
            "status": self.status,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run": self.run_info,
            "metrics": summarize_history(self.history, self.n),
            "history": self.history,
            "cost": cost,
            "env": environment(),
        }
        if self.error:
            out["error"] = self.error
        return out

    def write(self, runner) -> None:
        if is_main_process():
            atomic_write_json(Path(runner.work_dir) / RESULT_FILE, self.result(runner))


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Reseeds Python, NumPy and torch at the start of every training epoch from
    (seed, epoch, rank), so that the random stream of epoch k (mixing coefficients,
    augmentations, loader seeds) does not depend on history: a run resumed after epoch k
    continues exactly as the uninterrupted run would."""

    priority = "VERY_HIGH"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def before_train_epoch(self, runner) -> None:
        s = (self.seed * 1_000_003 + runner.epoch * 10_007 + get_rank()) % (2**31 - 1)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHookBase):
    """mmengine's CheckpointHook with a safe order of operations.

    mmengine deletes the oldest kept checkpoint *before* writing the new one and then
    rewrites ``last_checkpoint`` in place: a kill in between leaves ``last_checkpoint``
    pointing at a deleted (or, mid-write, an empty) path and ``--resume auto`` fails. Here
    the new checkpoint is written first (atomically, by :class:`MixbenchRunner`), then
    ``last_checkpoint`` (atomically), and only then are checkpoints beyond
    ``max_keep_ckpts`` deleted.

    ``max_keep_ckpts`` holds across resumes: the list of kept checkpoints is updated
    *before* the save, so each checkpoint records itself among the kept ones (a resumed run
    used to forget the checkpoint it resumed from, and never deleted it); and after each
    save every checkpoint of this run's name pattern outside the kept list is deleted, so
    one left behind by a kill between save and delete goes too. At the start of training
    the temp files of a write that never completed (``.epoch_3.pth.tmp`` after a full disk,
    ``.result.json.*.tmp`` after a kill) are removed. Options are mmengine's.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        # only the trainer's own temp files: the sweep writes sweep_state.json concurrently
        torn = [
            p
            for p in Path(self.out_dir).glob(".*.tmp")
            if self._checkpoint_step(p.name[1 : -len(".tmp")]) is not None
        ]
        torn += [
            p
            for name in (RESULT_FILE, "last_checkpoint")
            for p in Path(runner.work_dir).glob(f".{name}.*.tmp")
        ]
        for tmp in torn:
            if tmp.is_file():
                runner.logger.info(f"removing {tmp.name}, left by a write that never completed")
                tmp.unlink()

    def _checkpoint_step(self, name: str) -> int | None:
        head, _, tail = self.filename_tmpl.partition("{}")
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            middle = name[len(head) : len(name) - len(tail)]
            return int(middle) if middle.isdigit() else None
        return None

    def save_checkpoint_with_step(self, runner, step, meta) -> None:
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        keep = list(self.keep_ckpt_ids) if self.max_keep_ckpts > 0 else []
        if self.max_keep_ckpts > 0:
            if not keep or keep[-1] != step:
                keep.append(step)
            keep = keep[-self.max_keep_ckpts :]
            # recorded in the checkpoint being written: a run resumed from it knows it is kept
            runner.message_hub.update_info("keep_ckpt_ids", keep)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if is_main_process():
            atomic_write_text(Path(runner.work_dir) / "last_checkpoint", self.last_ckpt)
        if self.max_keep_ckpts <= 0:
            return
        self.keep_ckpt_ids.clear()
        self.keep_ckpt_ids.extend(keep)
        if is_main_process():
            for path in Path(self.out_dir).iterdir():
                old = self._checkpoint_step(path.name)
                if old is not None and old not in keep and path.is_file():
                    path.unlink()
