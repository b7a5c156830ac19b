"""Aggregation over seeds: one protocol, stated on every table.

Per run, the table metric is read off the run's validation history (top-1, %), one of the
named metrics of :data:`mixbench.results.METRICS`:

- ``median_last_n`` (default, N = 10): median of the last N evaluations, as OpenMixup
  reports (``mixbench.results.median_last_n``; all of them if fewer than N);
- ``best_last_n``: the best of the last N (OpenMixup's ViT tables);
- ``best``: the highest evaluation; ``last``: the final one;
- ``best_head_median_last_n``: OpenMixup's reading of AutoMix-style runs (best of four heads
  and two end windows, ``mixbench.results.best_head_median``).

Published numbers (:mod:`.compare`): each cell is set against OpenMixup's number only like
for like: same method settings, dataset, backbone, epochs and metric, where the metric is
the published cell's own (computed from our runs' histories, whatever the table metric);
otherwise the number is shown apart with the reasons and no difference is computed.

Per cell (dataset, backbone, epochs, method), over its seeds x_1..x_n:

- mean, sample standard deviation ``s`` (ddof = 1), n;
- 95% confidence interval of the mean, Student's t: ``mean +- t_{0.975, n-1} * s / sqrt(n)``;
- Delta = mean - mean(Vanilla) of the same (dataset, backbone, epochs), with Welch's unequal-
  variance t-test (Welch 1947) of the two seed samples; significant when ``p < alpha``
  (alpha = 0.05). A cell with one seed has no std, no CI and no test: it says so.
- cost: mean seconds per iteration relative to Vanilla's in the same table, mean peak
  memory (MB), device-hours per run = wall time x number of devices / 3600 (GPU-hours on
  GPUs, CPU-hours on CPU).

Ranks: within each table methods are ranked by mean (1 = best, ties share the average rank);
a method's rank on a dataset is the mean of its ranks over that dataset's tables (backbones,
epoch budgets); its average rank is the mean of its dataset ranks over the datasets it was
run on (the overall leaderboard, sorted by it).

Analysis columns (when some run has them): a run's ``analysis/<kind>.json`` files (written
by tools/analysis/, stored at ingest) give per run the ECE (``calibration.json``,
``summary.ece``, %, computed with the default 15 equal-width bins; files with other bin
counts are not comparable and are left out) and the top-1 under FGSM at eps = 8/255
(``adversarial.json``, ``summary.fgsm_eps8_top1``, %). Per cell: mean and sample std over
the seeds that have the file, with their number (see :data:`ANALYSIS_METRICS`). A file
older than its run's result.json (``updated``) evaluated an earlier attempt's checkpoint:
it is not used, and the report lists it.

If one cell holds two finished runs with the same seed (e.g. the config changed but the run
name did not), only the most recently updated one counts, and the report says which was
dropped. Runs that are not finished are listed, never aggregated.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import select
from sqlalchemy.engine import Engine

from mixbench.results import DEFAULT_LAST_N, TABLE_METRICS, check_metric, metric_value
from mixbench.results import METRICS as RUN_METRICS
from mixbench.results import metric_label as _metric_label

from .compare import Comparison, compare
from .db import analysis as analysis_table
from .db import epochs as epochs_table
from .db import make_engine, runs, where_runs
from .reported import REPORTED_CSV, ReportedCell, canonical_method, lookup_reported

METRICS = TABLE_METRICS
DEFAULT_ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class AnalysisMetric:
    """A per-run number read from an analysis file: ``summary[summary_key]`` of the run's
    ``analysis/<kind>.json``, used only when the file's settings include ``require``."""

    key: str
    kind: str
    summary_key: str
    label: str  # column header
    described: str  # how the protocol line names it
    require: tuple = ()  # ((setting, value), ...)


ANALYSIS_METRICS = (
    AnalysisMetric("ece", "calibration", "ece", "ECE (%)", "ECE (15 equal-width bins, %)", (("n_bins", 15),)),
    AnalysisMetric(
        "fgsm8_top1",
        "adversarial",
        "fgsm_eps8_top1",
        "FGSM 8/255 top-1 (%)",
        "top-1 under FGSM at ε = 8/255 (%)",
    ),
)
#: The analysis files the leaderboard reads, each once (two metrics may share a file).
ANALYSIS_KINDS = tuple(dict.fromkeys(m.kind for m in ANALYSIS_METRICS))


@dataclass
class RunRecord:
    """One run as the database holds it."""

    id: int
    name: str
    method: str
    dataset: str
    backbone: str
    epochs: int
    seed: int
    status: str
    updated_ts: float
    source_path: str | None
    setting: str = ""
    s_per_iter: float | None = None
    peak_mem_mb: float | None = None
    wall_s: float | None = None
    device: str | None = None
    num_devices: int | None = None
    error_message: str | None = None
    history: list[dict] = field(default_factory=list)  # {"epoch", "top1"[, "heads"]}
    method_settings: dict | None = None  # run.method_settings (None: schema 1 file)
    backbone_settings: dict | None = None
    value: float | None = None  # the table metric
    analysis: dict[str, dict] = field(default_factory=dict)  # kind -> {summary, settings}

    def analysis_is_stale(self, kind: str) -> bool:
        """True when the run's ``analysis/<kind>.json`` is older than its result.json (it
        evaluated a checkpoint of an earlier attempt or an unfinished run)."""
        found = self.analysis.get(kind)
        return found is not None and found["updated_ts"] < self.updated_ts

    def analysis_value(self, metric: AnalysisMetric) -> float | None:
        """The run's value of an analysis metric, None without a comparable, current file."""
        found = self.analysis.get(metric.kind)
        if (
            found is None
            or self.analysis_is_stale(metric.kind)
            or any(found["settings"].get(k) != v for k, v in metric.require)
        ):
            return None
        value = found["summary"].get(metric.summary_key)
        return None if value is None else float(value)

    @property
    def table_key(self) -> tuple[str, str, int, str]:
        """(dataset, backbone, epochs, setting): the table this belongs to."""
        return (self.dataset, self.backbone, self.epochs, self.setting)

    @property
    def device_hours(self) -> float | None:
        if self.wall_s is None:
            return None
        return self.wall_s * (self.num_devices or 1) / 3600.0

    @property
    def device_kind(self) -> str:
        if not self.device:
            return "device"
        return "CPU" if "cpu" in self.device.lower() else "GPU"


@dataclass
class SeedStat:
    """Mean, sample std (None for one value) and number of the seeds that have a value."""

    mean: float
    std: float | None
    n: int


@dataclass
class Cell:
    """One (dataset, backbone, epochs, method): its seeds and every aggregate shown."""

    dataset: str
    backbone: str
    epochs: int
    setting: str
    method: str
    seeds: list[int]
    values: list[float]
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    is_reference: bool
    delta: float | None = None
    p_value: float | None = None
    significant: bool | None = None
    s_per_iter: float | None = None
    rel_s_per_iter: float | None = None
    peak_mem_mb: float | None = None
    device_hours: float | None = None
    device_kind: str = "device"
    rank: float = math.nan
    is_best: bool = False
    reported: ReportedCell | None = None
    reported_delta: float | None = None
    comparison: Comparison | None = None  # against ``reported`` (see .compare)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, mean top1)
    analysis: dict[str, SeedStat] = field(default_factory=dict)  # ANALYSIS_METRICS key ->

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def diff_vs_reported(self) -> float | None:
        """ours - published, only when like for like (:mod:`.compare`), else None."""
        return self.comparison.diff if self.comparison is not None else None

    @property
    def table_key(self) -> tuple[str, str, int, str]:
        """(dataset, backbone, epochs, setting): the table this belongs to."""
        return (self.dataset, self.backbone, self.epochs, self.setting)


@dataclass
class Leaderboard:
    """Everything a report shows."""

    metric: str
    last_n: int
    alpha: float
    filters: dict
    tables: dict[tuple, list[Cell]]  # table key -> cells sorted by rank
    dataset_ranks: dict[str, dict[str, float]]  # method -> dataset -> rank
    average_rank: list[tuple[str, float, int]]  # (method, average rank, datasets), best first
    in_progress: list[RunRecord]
    failed: list[RunRecord]
    excluded: list[tuple[RunRecord, str]]
    stale_analyses: list[tuple[RunRecord, str]] = field(default_factory=list)  # (run, kind)

    @property
    def metric_label(self) -> str:
        """The metric's name as OpenMixup's tables spell it (``median_last10``)."""
        return metric_label(self.metric, self.last_n)

    @property
    def cells(self) -> list[Cell]:
        return [c for cells in self.tables.values() for c in cells]

    @property
    def datasets(self) -> list[str]:
        return sorted({k[0] for k in self.tables})

    def protocol(self) -> str:
        """The protocol line stated on every report."""
        what = RUN_METRICS[self.metric].describe(self.last_n)
        seeds = sorted({c.n for c in self.cells})
        shown = [m for m in ANALYSIS_METRICS if any(m.key in c.analysis for c in self.cells)]
        extra = (
            " "
            + " and ".join(m.described for m in shown)
            + " from each run's analysis/*.json: mean ± std over the seeds that have them."
            if shown
            else ""
        )
        flt = (
            ", filter " + ", ".join(f"{k}={v}" for k, v in sorted(self.filters.items()))
            if self.filters
            else ""
        )
        return (
            f"Protocol: per run, {what} (`{self.metric_label}`); per cell, mean ± sample "
            f"std (ddof=1) over seeds (n = {', '.join(map(str, seeds)) or '-'}), "
            f"{int(CONFIDENCE * 100)}% CI from Student's t; Δ vs Vanilla of the same "
            f"dataset/backbone/epochs with Welch's t-test, significant (*) at "
            f"α = {self.alpha:g}; cells with one seed have no error bar{flt}.{extra}"
        )


def metric_label(metric: str, last_n: int) -> str:
    return _metric_label(metric, last_n)


def run_metric(history: list[dict], metric: str, last_n: int) -> float | None:
    """The table metric of one run from its history (:func:`mixbench.results.metric_value`);
    None without the evaluations it reads."""
    return metric_value(history, metric, last_n)


def mean_std_ci(values: list[float], confidence: float = CONFIDENCE):
    """(mean, sample std, CI low, CI high); std and CI are None for a single value.

    CI: ``mean +- t_{(1+confidence)/2, n-1} * s / sqrt(n)`` (Student's t quantile).
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None, None
    from scipy.special import stdtrit  # inverse CDF of Student's t

    std = statistics.stdev(values)
    half = float(stdtrit(len(values) - 1, 0.5 + confidence / 2)) * std / math.sqrt(len(values))
    return mean, std, mean - half, mean + half


def welch_t(a: list[float], b: list[float]) -> tuple[float, float, float] | None:
    """Welch's unequal-variance t statistic parts (Welch 1947): ``(mean_a - mean_b, se, df)``
    with ``se = sqrt(s_a^2/n_a + s_b^2/n_b)`` and the Welch-Satterthwaite degrees of freedom
    ``(v_a + v_b)^2 / (v_a^2/(n_a-1) + v_b^2/(n_b-1))``, ``v = s^2/n``. None when a side has
    fewer than 2 values or both sides have zero variance (the test is undefined)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return statistics.fmean(a) - statistics.fmean(b), math.sqrt(va + vb), df


def welch_p_value(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test: ``p = 2 * P(T_df <= -|t|)``, ``t = diff / se``
    (:func:`welch_t`); None where the test is undefined."""
    parts = welch_t(a, b)
    if parts is None:
        return None
    from scipy.special import stdtr  # CDF of Student's t

    diff, se, df = parts
    return float(2 * stdtr(df, -abs(diff / se)))


def welch_interval(a: list[float], b: list[float], confidence: float = CONFIDENCE):
    """(mean_a - mean_b, low, high): the Welch confidence interval of the difference of
    means, ``diff +- t_{(1+confidence)/2, df} * se`` (:func:`welch_t`); low and high are
    None where Welch's test is undefined (fewer than 2 values a side, or no variance)."""
    parts = welch_t(a, b)
    if parts is None:
        return statistics.fmean(a) - statistics.fmean(b), None, None
    from scipy.special import stdtrit  # inverse CDF of Student's t

    diff, se, df = parts
    half = float(stdtrit(df, 0.5 + confidence / 2)) * se
    return diff, diff - half, diff + half


def average_ranks(scores: list[float]) -> list[float]:
    """Rank of each score, highest = 1; tied scores share the mean of their positions."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _loads(text: str | None):
    return None if text is None else json.loads(text)


def load_runs(engine: Engine, filters: dict | None = None) -> list[RunRecord]:
    """Every run in the database matching ``filters`` ({column: value}), with history."""
    query = select(runs).order_by(
        runs.c.dataset, runs.c.backbone, runs.c.epochs, runs.c.method, runs.c.seed, runs.c.id
    )
    query = where_runs(query, filters or {})
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        ids = [r["id"] for r in rows]
        hist: dict[int, list] = defaultdict(list)
        found: dict[int, dict] = defaultdict(dict)
        if ids:
            for h in conn.execute(
                select(
                    epochs_table.c.run_id,
                    epochs_table.c.epoch,
                    epochs_table.c.top1,
                    epochs_table.c.heads_json,
                )
                .where(epochs_table.c.run_id.in_(ids))
                .order_by(epochs_table.c.run_id, epochs_table.c.idx)
            ):
                if h.top1 is not None:
                    entry = {"epoch": h.epoch, "top1": h.top1}
                    if h.heads_json:
                        entry["heads"] = json.loads(h.heads_json)
                    hist[h.run_id].append(entry)
            for a in conn.execute(select(analysis_table).where(analysis_table.c.run_id.in_(ids))):
                found[a.run_id][a.kind] = {
                    "summary": json.loads(a.summary_json),
                    "settings": json.loads(a.settings_json or "{}"),
                    "updated_ts": a.updated_ts,
                }
    records = []
    for r in rows:
        tags = json.loads(r["tags_json"] or "{}")
        records.append(
            RunRecord(
                id=r["id"],
                name=r["name"],
                method=r["method"],
                dataset=r["dataset"],
                backbone=r["backbone"],
                epochs=r["epochs"],
                seed=r["seed"],
                status=r["status"],
                updated_ts=r["updated_ts"],
                source_path=r["source_path"],
                setting=str(tags.get("setting", "") or ""),
                s_per_iter=r["s_per_iter"],
                peak_mem_mb=r["peak_mem_mb"],
                wall_s=r["wall_s"],
                device=r["device"],
                num_devices=r["num_devices"],
                error_message=r["error_message"],
                history=hist[r["id"]],
                analysis=found[r["id"]],
                method_settings=_loads(r["method_settings_json"]),
                backbone_settings=_loads(r["backbone_settings_json"]),
            )
        )
    return records


def _select_counted(records: list[RunRecord], metric: str, last_n: int):
    """Split runs into counted (one per cell and seed), in progress, failed and excluded."""
    in_progress = [r for r in records if r.status == "running"]
    failed = [r for r in records if r.status == "failed"]
    excluded: list[tuple[RunRecord, str]] = []
    by_seed: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.status != "finished":
            continue
        r.value = run_metric(r.history, metric, last_n)
        if r.value is None:
            excluded.append(
                (
                    r,
                    "finished but its history has no top-1 evaluation"
                    if not r.history
                    else f"finished but its history gives no {metric_label(metric, last_n)} "
                    "(the per-head evaluations of AutoMix-style runs are missing)",
                )
            )
            continue
        seed_key = (*r.table_key, r.method, r.seed)
        by_seed[seed_key].append(r)
    counted = []
    for group in by_seed.values():
        group.sort(key=lambda r: (r.updated_ts, r.id))
        counted.append(group[-1])
        excluded.extend(
            (
                r,
                f"same cell and seed {r.seed} as the newer run "
                f"{group[-1].name!r} ({group[-1].source_path}); only the newer "
                "one counts",
            )
            for r in group[:-1]
        )
    return counted, in_progress, failed, excluded


def _curve(runs_: list[RunRecord]) -> list[tuple[int, float]]:
    per_epoch: dict[int, list[float]] = defaultdict(list)
    for r in runs_:
        for h in r.history:
            per_epoch[h["epoch"]].append(h["top1"])
    return [(e, statistics.fmean(v)) for e, v in sorted(per_epoch.items())]


def _analysis_stats(runs_: list[RunRecord]) -> dict[str, SeedStat]:
    """Mean and sample std of each analysis metric over the runs that have it."""
    stats = {}
    for m in ANALYSIS_METRICS:
        found = [v for v in (r.analysis_value(m) for r in runs_) if v is not None]
        if found:
            mean, std, _, _ = mean_std_ci(found)
            stats[m.key] = SeedStat(mean, std, len(found))
    return stats


def _make_cell(key: tuple[str, str, int, str], method: str, runs_: list[RunRecord], reported_csv) -> Cell:
    runs_ = sorted(runs_, key=lambda r: r.seed)
    reported = lookup_reported(*key[:3], method, key[3], reported_csv)
    values = cast(list[float], [r.value for r in runs_])  # counted runs have one (_select_counted)
    mean, std, lo, hi = mean_std_ci(values)
    kinds = {r.device_kind for r in runs_}
    return Cell(
        *key,
        method=method,
        seeds=[r.seed for r in runs_],
        values=values,
        mean=mean,
        std=std,
        ci_low=lo,
        ci_high=hi,
        is_reference=canonical_method(method) == "vanilla",
        s_per_iter=_mean(r.s_per_iter for r in runs_),
        peak_mem_mb=_mean(r.peak_mem_mb for r in runs_),
        device_hours=_mean(r.device_hours for r in runs_),
        device_kind=kinds.pop() if len(kinds) == 1 else "device",
        curve=_curve(runs_),
        analysis=_analysis_stats(runs_),
        reported=reported,
        comparison=compare(runs_, reported) if reported is not None else None,
    )


def _compare_table(cells: list[Cell], alpha: float, reported_csv) -> None:
    """Fill Delta, Welch test, relative cost, ranks and the reported Δ of one table."""
    ref = next((c for c in cells if c.is_reference), None)
    for c in cells:
        if ref is not None and not c.is_reference:
            c.delta = c.mean - ref.mean
            c.p_value = welch_p_value(c.values, ref.values)
            c.significant = None if c.p_value is None else c.p_value < alpha
        if ref is not None and c.s_per_iter is not None and ref.s_per_iter:
            c.rel_s_per_iter = c.s_per_iter / ref.s_per_iter
    ref_reported = lookup_reported(
        cells[0].dataset, cells[0].backbone, cells[0].epochs, "Vanilla", cells[0].setting, reported_csv
    )
    for c in cells:
        if c.reported is not None and ref_reported is not None and not c.is_reference:
            c.reported_delta = c.reported.top1 - ref_reported.top1
    ranks = average_ranks([c.mean for c in cells])
    best = max(c.mean for c in cells)
    for c, rank in zip(cells, ranks):
        c.rank = float(rank)
        c.is_best = c.mean == best
    cells.sort(key=lambda c: (c.rank, c.method))


def aggregate(
    records: list[RunRecord],
    metric: str = "median_last_n",
    last_n: int = DEFAULT_LAST_N,
    alpha: float = DEFAULT_ALPHA,
    filters: dict | None = None,
    reported_csv=REPORTED_CSV,
) -> Leaderboard:
    """Turn run records into the :class:`Leaderboard` (see the module docstring)."""
    check_metric(metric)
    counted, in_progress, failed, excluded = _select_counted(records, metric, last_n)
    by_cell: dict[tuple, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in counted:
        by_cell[r.table_key][r.method].append(r)
    tables: dict[tuple, list[Cell]] = {}
    for key in sorted(by_cell):
        cells = [_make_cell(key, m, rs, reported_csv) for m, rs in sorted(by_cell[key].items())]
        _compare_table(cells, alpha, reported_csv)
        tables[key] = cells
    per_dataset: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for c in (c for cells in tables.values() for c in cells):
        per_dataset[c.method][c.dataset].append(c.rank)
    dataset_ranks = {m: {d: statistics.fmean(r) for d, r in ds.items()} for m, ds in per_dataset.items()}
    average_rank = sorted(
        ((m, statistics.fmean(ds.values()), len(ds)) for m, ds in dataset_ranks.items()),
        key=lambda t: (t[1], t[0]),
    )
    return Leaderboard(
        metric=metric,
        last_n=last_n,
        alpha=alpha,
        filters=dict(filters or {}),
        tables=tables,
        dataset_ranks=dataset_ranks,
        average_rank=average_rank,
        in_progress=in_progress,
        failed=failed,
        excluded=excluded,
        stale_analyses=[(r, kind) for r in counted for kind in ANALYSIS_KINDS if r.analysis_is_stale(kind)],
    )


def build_leaderboard(
    db_url: str | None = None,
    metric: str = "median_last_n",
    last_n: int = DEFAULT_LAST_N,
    alpha: float = DEFAULT_ALPHA,
    filters: dict | None = None,
    engine: Engine | None = None,
) -> Leaderboard:
    """Read the database and aggregate it."""
    if engine is None:
        engine = make_engine(db_url)
        try:
            records = load_runs(engine, filters)
        finally:
            engine.dispose()
    else:
        records = load_runs(engine, filters)
    return aggregate(records, metric=metric, last_n=last_n, alpha=alpha, filters=filters)
