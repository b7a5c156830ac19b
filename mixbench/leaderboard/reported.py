"""The numbers OpenMixup publishes, to show beside our reproductions, with the settings
each was produced with.

``data/openmixup_reported.csv`` holds every top-1 accuracy of the OpenMixup benchmark tables
(Westlake-AI/openmixup, docs/en/mixup_benchmarks/*.md, repository state 2025-10; see
``data/SOURCE.md``). Method names are matched case-insensitively, ignoring ``-``, ``_`` and
spaces, through :data:`METHOD_ALIASES` (e.g. our ``Mixup`` is their ``MixUp``).

Each cell also states how it was produced, where we have read it off OpenMixup's config for
that table (``settings_source``): ``method_settings`` (the method as our configs write it,
:func:`mixbench.fingerprint.method_settings`), ``backbone_settings`` (our backbone config
that is OpenMixup's backbone), ``settings_explain`` (known differences between our code and
OpenMixup's, by option path, in the words the report uses), and the ``epochs`` and
``metric`` columns. A cell without ``method_settings`` has not been checked: it is never
comparable (:mod:`mixbench.leaderboard.compare`).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPORTED_CSV = Path(__file__).resolve().parent / "data" / "openmixup_reported.csv"

# Normalized spelling -> canonical normalized name, for names that differ beyond case and
# punctuation between papers, OpenMixup's tables and mixbench's mixer classes.
METHOD_ALIASES = {
    "baseline": "vanilla",
    "erm": "vanilla",
    "none": "vanilla",
    "inputmixup": "mixup",
    "manifoldmixup": "manifoldmix",
    "comix": "comixup",
    "attentivemixplus": "attentivemix+",
    "puzzlemixup": "puzzlemix",
    "deitmixer": "deit",
}


def canonical_method(name: str) -> str:
    """Case-, space-, ``-``- and ``_``-insensitive method key, aliases resolved."""
    key = re.sub(r"[\s_\-]+", "", str(name).lower())
    return METHOD_ALIASES.get(key, key)


@dataclass(frozen=True)
class ReportedCell:
    """One published number and the settings it was produced with (None: not recorded)."""

    dataset: str
    backbone: str
    epochs: int
    setting: str
    method: str
    alpha: str
    top1: float
    metric: str
    source: str
    method_settings: dict | None = None
    backbone_settings: dict | None = None
    settings_explain: dict = field(default_factory=dict)
    settings_source: str = ""


def _json_cell(row: dict, key: str, where: str):
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: column {key} is not valid JSON ({e}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: column {key} must hold a JSON object, got {text[:80]!r}")
    return value


@lru_cache(maxsize=4)
def load_reported(path: str | Path = REPORTED_CSV) -> dict[tuple, ReportedCell]:
    """Reported cells keyed by (dataset, backbone, epochs, setting, canonical method)."""
    out: dict[tuple, ReportedCell] = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            where = f"{path}, line {line}"
            cell = ReportedCell(
                row["dataset"],
                row["backbone"],
                int(row["epochs"]),
                row["setting"],
                row["method"],
                row["alpha"],
                float(row["top1"]),
                row["metric"],
                row["source"],
                method_settings=_json_cell(row, "method_settings", where),
                backbone_settings=_json_cell(row, "backbone_settings", where),
                settings_explain=_json_cell(row, "settings_explain", where) or {},
                settings_source=row.get("settings_source") or "",
            )
            out[(cell.dataset, cell.backbone, cell.epochs, cell.setting, canonical_method(cell.method))] = (
                cell
            )
    return out


def lookup_reported(
    dataset: str, backbone: str, epochs: int, method: str, setting: str = "", path: str | Path = REPORTED_CSV
) -> ReportedCell | None:
    """The published number for one cell, or None when OpenMixup has none."""
    return load_reported(path).get((dataset, backbone, int(epochs), setting, canonical_method(method)))
