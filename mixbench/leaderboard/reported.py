"""The numbers OpenMixup publishes, to show beside our reproductions.

``data/openmixup_reported.csv`` holds every top-1 accuracy of the OpenMixup benchmark tables
(Westlake-AI/openmixup, docs/en/mixup_benchmarks/*.md, repository state 2025-10; see
``data/SOURCE.md``). Method names are matched case-insensitively, ignoring ``-``, ``_`` and
spaces, through :data:`METHOD_ALIASES` (e.g. our ``Mixup`` is their ``MixUp``). A reported
number is compared with ours only when it was read off the run the same way (its ``metric``
equals our table metric, e.g. ``median_last10``).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

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
    """One published number."""
    dataset: str
    backbone: str
    epochs: int
    setting: str
    method: str
    alpha: str
    top1: float
    metric: str
    source: str


@lru_cache(maxsize=4)
def load_reported(path: str | Path = REPORTED_CSV) -> dict[tuple, ReportedCell]:
    """Reported cells keyed by (dataset, backbone, epochs, setting, canonical method)."""
    out: dict[tuple, ReportedCell] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cell = ReportedCell(row["dataset"], row["backbone"], int(row["epochs"]),
                                row["setting"], row["method"], row["alpha"],
                                float(row["top1"]), row["metric"], row["source"])
            out[(cell.dataset, cell.backbone, cell.epochs, cell.setting,
                 canonical_method(cell.method))] = cell
    return out


def lookup_reported(dataset: str, backbone: str, epochs: int, method: str, setting: str = "",
                    path: str | Path = REPORTED_CSV) -> Optional[ReportedCell]:
    """The published number for one cell, or None when OpenMixup has none."""
    return load_reported(path).get((dataset, backbone, int(epochs), setting,
                                    canonical_method(method)))
