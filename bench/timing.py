"""Timing helpers shared by the benchmarks under bench/.

On a shared, oversubscribed machine a single timing mostly measures how often the process
was descheduled. These helpers time several functions *round-robin* (one call -- or
``calls`` calls -- of each per round), so that load hits them alike, and record both wall
time and process CPU time (all threads of this process; other processes disturb it much
less than wall time). The minimum over rounds estimates the cost of the work itself, the
median what a user would see; ratios between functions timed in the same run compare
better across machines than milliseconds do. On CUDA every call is synchronised.

    from timing import round_robin
    t = round_robin({"a": f, "b": g}, device="cpu", rounds=50, budget_s=5.0)
    t["a"].best, t["a"].median, t["a"].cpu_best      # seconds per call
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def sync(device: str) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Timings:
    """Seconds per call, one entry per round: ``wall`` (perf_counter) and ``cpu``
    (process_time, all threads of this process)."""

    wall: list = field(default_factory=list)
    cpu: list = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_best(self) -> float:
        return min(self.cpu)


def round_robin(
    fns: dict[str, Callable[[], object]],
    device: str = "cpu",
    rounds: int = 200,
    budget_s: float = float("inf"),
    min_rounds: int = 3,
    calls: int = 1,
    warmup: int = 1,
) -> dict[str, Timings]:
    """Time each function of ``fns`` round-robin; returns name -> :class:`Timings`.

    ``warmup`` untimed calls of each first (compilation, caches, allocator); then up to
    ``rounds`` rounds, stopping after ``min_rounds`` once ``budget_s`` seconds have passed.
    Each round times ``calls`` consecutive calls of each function and records the mean
    per call; the function that goes first changes every round (rotation), so none is
    always the one that meets a cold cache or the other processes' burst.
    """
    if rounds < 1 or min_rounds < 1 or calls < 1:
        raise ValueError(f"rounds, min_rounds and calls must be >= 1, got {rounds}, {min_rounds}, {calls}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {k: Timings() for k in fns}
    order = list(fns)
    start = time.perf_counter()
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            fn = fns[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            sync(device)
            times[name].wall.append((time.perf_counter() - t0) / calls)
            times[name].cpu.append((time.process_time() - c0) / calls)
        if r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return times


def best_time(
    fn: Callable[[], object], device: str = "cpu", budget_s: float = 1.0, max_reps: int = 10
) -> float:
    """Best (minimum) wall seconds of ``fn()`` over repeats filling ``budget_s`` (at least
    3, at most ``max_reps``, after one warm-up call)."""
    return round_robin({"fn": fn}, device, rounds=max_reps, budget_s=budget_s, min_rounds=min(3, max_reps))[
        "fn"
    ].best
