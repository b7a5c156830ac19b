"""Like for like: when one of our cells may be set against a published number.

A published number (:class:`~mixbench.leaderboard.reported.ReportedCell`) is comparable with
a cell of our runs only when every run of the cell has the published cell's

- method settings (``run.method_settings`` of result.json against the cell's
  ``method_settings``, :func:`mixbench.fingerprint.setting_differences`; a known difference
  between our code and OpenMixup's is named as the CSV's ``settings_explain`` says, e.g.
  "SmoothMix label weight corrected");
- backbone settings (``run.backbone_settings`` against ``backbone_settings``, when the
  published cell states them), dataset, backbone name and epochs;
- metric: the published cell's metric (``median_last10``, ``best_last10``,
  ``best_head_median_last10``...) is computed from each run's history, and every epoch it
  reads must have been evaluated (:func:`mixbench.results.metric_shortfall`).

Then ``ours`` is the mean over the cell's runs of that metric and ``diff = ours - published``.
Otherwise the comparison carries the reasons, and no difference is computed: the report
shows the published number apart, with the reasons.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from mixbench.fingerprint import setting_differences
from mixbench.results import metric_label, metric_shortfall, metric_value, parse_metric_label

from .reported import ReportedCell


@dataclass
class Comparison:
    """Our cell against one published number."""

    reported: ReportedCell
    metric: str | None  # our metric key for the published label (None: unknown)
    last_n: int | None
    ours: float | None = None  # mean over the runs of the published metric (when computable)
    reasons: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return not self.reasons and self.ours is not None

    @property
    def diff(self) -> float | None:
        """ours - published, only like for like (None otherwise)."""
        if not self.comparable or self.ours is None:
            return None
        return self.ours - self.reported.top1

    @property
    def metric_label(self) -> str:
        return self.reported.metric


def _dedupe(items) -> list[str]:
    return list(dict.fromkeys(items))


def settings_reasons(runs: Sequence, reported: ReportedCell) -> list[str]:
    """Why the runs' settings are not the published cell's (empty: they are)."""
    if reported.method_settings is None:
        return [
            "published settings not recorded for this cell (mixbench/leaderboard/data/"
            "openmixup_reported.csv has no method_settings for it)"
        ]
    reasons = []
    for label, ours, theirs in (
        ("dataset", "dataset", reported.dataset),
        ("backbone", "backbone", reported.backbone),
        ("epochs", "epochs", reported.epochs),
    ):
        values = sorted({str(getattr(r, ours)) for r in runs})
        if values != [str(theirs)]:
            reasons.append(f"{label} {', '.join(values)} vs published {theirs}")
    unknown = [r.name for r in runs if r.method_settings is None]
    if unknown:
        reasons.append(
            f"run {unknown[0]} records no method settings (a result.json of schema 1): "
            "its settings cannot be checked" + (f" ({len(unknown)} runs)" if len(unknown) > 1 else "")
        )
    known = [r for r in runs if r.method_settings is not None]
    variants = {json.dumps(r.method_settings, sort_keys=True): r for r in known}
    if len(variants) > 1:
        a, b = list(variants.values())[:2]
        reasons.append(
            f"the cell's runs differ in method settings ({a.name} vs {b.name}: "
            + "; ".join(setting_differences(a.method_settings, b.method_settings)).replace(
                "published", b.name
            )
            + ")"
        )
    elif known:
        reasons += setting_differences(
            known[0].method_settings, reported.method_settings, explain=reported.settings_explain
        )
    if reported.backbone_settings is not None:
        for r in runs:
            if r.backbone_settings is None:
                continue
            reasons += [
                f"backbone {d}" for d in setting_differences(r.backbone_settings, reported.backbone_settings)
            ]
    return _dedupe(reasons)


def compare(runs: Sequence, reported: ReportedCell) -> Comparison:
    """Our runs of one cell (objects with ``name``, ``dataset``, ``backbone``, ``epochs``,
    ``history``, ``method_settings``, ``backbone_settings``, as
    :class:`~mixbench.leaderboard.aggregate.RunRecord`) against a published number."""
    try:
        metric, n = parse_metric_label(reported.metric)
    except ValueError:
        return Comparison(
            reported,
            None,
            None,
            reasons=[f"metric differs: the published {reported.metric} is not a metric mixbench computes"],
        )
    n_used = n if n is not None else 1
    comp = Comparison(reported, metric, n)
    values = [metric_value(r.history, metric, n_used) for r in runs]
    known = [v for v in values if v is not None]
    if runs and len(known) == len(values):
        comp.ours = statistics.fmean(known)
    comp.reasons = settings_reasons(runs, reported)
    comp.reasons += _dedupe(
        s for s in (metric_shortfall(r.history, metric, n_used, r.epochs) for r in runs) if s
    )
    if comp.ours is None and not any(s.startswith("metric differs") for s in comp.reasons):
        comp.reasons.append(f"metric differs: no run of the cell gives {metric_label(metric, n_used)}")
    return comp
