"""What the sweep shows people: the plan, the status table, the end-of-run summary, and the
bridge to the results database (``mixbench.leaderboard``, when it is installed)."""

from __future__ import annotations

import statistics
from collections import Counter

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table

from .spec import Sweep
from .state import LOG_FILE, effective_status, read_result, read_state

STATUS_STYLE = {"done": "green", "running": "cyan", "pending": "white", "failed": "bold red"}


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def cost_estimates(sweep: Sweep) -> dict:
    """``{run name: seconds}``: a run's own wall time when it finished, else the mean wall time
    of the finished runs of its cell (same everything but the seed); absent when unknown."""
    own, by_cell = {}, {}
    for run in sweep.runs:
        result = read_result(run.work_dir)
        if result and result.get("status") == "finished" and result["cost"].get("wall_s") is not None:
            own[run.name] = float(result["cost"]["wall_s"])
            by_cell.setdefault(run.cell, []).append(own[run.name])
    return {
        run.name: own[run.name] if run.name in own else statistics.fmean(by_cell[run.cell])
        for run in sweep.runs
        if run.name in own or run.cell in by_cell
    }


def plan_table(sweep: Sweep, live_jobs: dict | None = None) -> Group:
    """The runs of a sweep, their status and estimated cost, and the totals."""
    est = cost_estimates(sweep)
    table = Table(title=f"sweep {sweep.name}: {len(sweep.runs)} runs -> {sweep.work_root}/")
    for col in ("run", "status", "est. time", "gpus", "cpus", "mem", "time limit"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    remaining, unknown = 0.0, 0
    for run in sweep.runs:
        status = effective_status(run.work_dir, live_jobs=live_jobs)
        r = run.resources
        table.add_row(
            run.name,
            f"[{STATUS_STYLE[status]}]{status}",
            _fmt_s(est.get(run.name)),
            str(r.gpus),
            str(r.cpus),
            f"{r.mem_gb:g}G",
            f"{r.time_min}m",
        )
        if status != "done":
            if run.name in est:
                remaining += est[run.name] * max(1, r.gpus)
            else:
                unknown += 1
    todo = sum(1 for run in sweep.runs if effective_status(run.work_dir, live_jobs=live_jobs) != "done")
    unit = "GPU-time" if any(r.resources.gpus for r in sweep.runs) else "run time"
    known = "no estimate yet" if todo and unknown == todo else f"estimated {unit}: {_fmt_s(remaining)}"
    footer = (
        f"{len(sweep.runs)} runs, {todo} to do; {known} (from finished runs of the same "
        f"cells; {unknown} without an estimate yet)"
    )
    return Group(table, footer)


def status_counts(sweep: Sweep, live_jobs: dict | None = None) -> Counter:
    return Counter(effective_status(run.work_dir, live_jobs=live_jobs) for run in sweep.runs)


def status_table(sweep: Sweep, live_jobs: dict | None = None) -> Group:
    """pending / running / done / failed per run, a progress bar, and failed runs' log tails."""
    table = Table(title=f"sweep {sweep.name} ({sweep.work_root}/)")
    for col in ("run", "status", "launches", "failures", "epochs", "top1 last", "wall", "where"):
        table.add_column(col, justify="left" if col in ("run", "status", "where") else "right")
    counts: Counter = Counter()
    failed_tails = []
    for run in sweep.runs:
        state = read_state(run.work_dir)
        status = effective_status(run.work_dir, state, live_jobs)
        counts[status] += 1
        result = read_result(run.work_dir) or {}
        metrics, cost = result.get("metrics", {}), result.get("cost", {})
        where = (
            f"job {state['job_id']}"
            if state.get("job_id")
            else f"pid {state['pid']}"
            if state.get("pid") and status == "running"
            else ""
        )
        top1 = metrics.get("top1_last")
        table.add_row(
            run.name,
            f"[{STATUS_STYLE[status]}]{status}",
            str(state.get("launches", 0)),
            str(state.get("failures", 0)),
            f"{metrics.get('epochs_done', 0)}/{run.axes['epochs']}",
            "-" if top1 is None else f"{top1:.2f}",
            _fmt_s(cost.get("wall_s")),
            where,
        )
        if status == "failed":
            failed_tails.append(
                f"[bold red]{run.name}[/] failed; last lines of "
                f"{run.work_dir / LOG_FILE}:\n{state.get('log_tail', '')}"
            )
    total = len(sweep.runs)
    line = "  ".join(f"{k} {counts.get(k, 0)}" for k in ("done", "running", "pending", "failed"))
    progress = Table.grid(padding=(0, 2))
    progress.add_row(
        ProgressBar(total=total, completed=counts.get("done", 0), width=50),
        f"{counts.get('done', 0)}/{total} done   {line}",
    )
    return Group(table, progress, *failed_tails)


def console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=160)
