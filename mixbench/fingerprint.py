"""A run's settings fingerprint, and how two fingerprints differ, in plain words.

A number is set beside a published one only when both come from the same settings: the
method (every option of its classifier, mixer and loss, its parameter groups and hooks), the
dataset, the backbone, the number of epochs and the metric (how the number was read off the
run). Every run records :func:`method_settings` of its config in ``result.json``
(``run.method_settings``, schema 2, :mod:`mixbench.results`); the reference CSV of published
numbers states the same for each published cell (``mixbench/leaderboard/data``), and the
leaderboard compares the two with :func:`setting_differences`.

Settings are compared as written, after :func:`canonical` (key order, tuples vs lists and
``1`` vs ``1.0`` do not matter): an option stated on one side only is a difference, even
when it equals the class default, because defaults live in the classes (torch) and this
module must work without them. A config that reproduces a published cell therefore states
every option the cell states (``configs/methods/openmixup/*.yaml`` do, for the CIFAR-100
ResNet-18 table).

Only the standard library and :mod:`mixbench.config`: the sweep and the leaderboard use it
without torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from mixbench.config import get_path, merge
from mixbench.method import method_section

DEFAULT_MIXER = {"type": "Vanilla"}
DEFAULT_LOSS = {"type": "MixedCrossEntropy"}
#: the parts of :func:`method_settings`, in the order a difference is reported
METHOD_PARTS = ("classifier", "mixer", "loss", "paramwise_cfg", "hooks")


def canonical(obj: Any) -> Any:
    """A JSON-plain copy of ``obj`` that compares equal whenever two settings mean the same:
    mappings with string keys, tuples as lists, integral floats as ints (``1.0`` -> ``1``,
    so ``alpha: 1`` and ``alpha: 1.0`` agree); other values unchanged."""
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, float) and math.isfinite(obj) and obj == int(obj):
        return int(obj)
    return obj


def method_settings(cfg: Mapping) -> dict:
    """The settings that define the config's method, as the run used them::

        {"classifier": {"type": ..., every classifier option},   # default MixupClassifier
         "mixer": {"type": ..., every mixer option},             # default Vanilla
         "loss": {"type": ..., every option},                    # the loss that is trained
         "paramwise_cfg": {...}, "hooks": [...]}

    From the ``method:`` section (:func:`mixbench.method.method_section`; the method name is
    a label, not a setting, and is left out); ``loss`` is the recipe's ``model.loss`` merged
    with ``method.loss`` (:func:`mixbench.config.merge`, as the model is built), so a
    method that keeps the recipe's loss records that loss. Canonical (:func:`canonical`) and
    JSON-plain."""
    method = method_section(cfg)
    recipe_loss = get_path(cfg, "model.loss") or DEFAULT_LOSS
    loss = merge(recipe_loss, method["loss"]) if method["loss"] else recipe_loss
    return canonical(
        {
            "classifier": method["classifier"],
            "mixer": method["mixer"] or DEFAULT_MIXER,
            "loss": loss,
            "paramwise_cfg": method["paramwise_cfg"],
            "hooks": method["hooks"],
        }
    )


def backbone_settings(cfg: Mapping) -> dict:
    """The backbone as configured (``model.backbone``, canonical); ``{}`` without one."""
    return canonical(get_path(cfg, "model.backbone", {}) or {})


def _show(value: Any) -> str:
    return (
        json.dumps(value, sort_keys=True)
        if isinstance(value, (Mapping, list))
        else (repr(value) if isinstance(value, str) else str(value))
    )


_UNSET = object()


def setting_differences(
    ours: Any, published: Any, path: str = "", explain: Mapping[str, str] | None = None
) -> list[str]:
    """Every difference between two settings trees, one sentence each, in a stable order:
    ``"mixer.alpha 1 vs published 0.2"``, ``"mixer.prob 0.5 set here, not in the
    published setting"``, ``"classifier.eta_k unset here, published 1"``.

    ``explain`` maps a dotted path (e.g. ``mixer.label_weight``) to the sentence to use for a
    difference at or below it (e.g. ``"SmoothMix label weight corrected"``): a known
    difference between our code and OpenMixup's, said the way people know it. Lists are
    compared whole (their order means something: stages, hooks)."""
    explain = explain or {}
    for key in sorted(explain, key=len, reverse=True):
        if path == key or path.startswith(key + "."):
            return [] if canonical(ours) == canonical(published) else [explain[key]]
    if isinstance(ours, Mapping) and isinstance(published, Mapping):
        out: list[str] = []
        keys = list(published) + [k for k in ours if k not in published]
        if "type" in keys:
            keys.remove("type")
            keys.insert(0, "type")
        for key in keys:
            sub = f"{path}.{key}" if path else str(key)
            a, b = ours.get(key, _UNSET), published.get(key, _UNSET)
            if key == "type" and a is not _UNSET and b is not _UNSET and a != b:
                return [f"{sub} {a} vs published {b}"]  # another class: options do not compare
            out += setting_differences(a, b, sub, explain)
        return out
    if ours is _UNSET and published is _UNSET:
        return []
    if ours is _UNSET:
        return [f"{path} unset here, published {_show(published)}"]
    if published is _UNSET:
        return [f"{path} {_show(ours)} set here, not in the published setting"]
    if canonical(ours) == canonical(published):
        return []
    return [f"{path} {_show(ours)} vs published {_show(published)}"]
