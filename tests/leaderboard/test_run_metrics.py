"""The named per-run metrics of mixbench.results and the settings fingerprint of a config."""

import pytest

from mixbench.fingerprint import method_settings
from mixbench.results import (
    SCHEMA_VERSION,
    ResultFileError,
    best_head_median,
    best_head_window,
    metric_label,
    metric_shortfall,
    metric_value,
    parse_metric_label,
    summarize_history,
    validate_result,
)


def hist(values, start=1, heads=None):
    out = [{"epoch": start + i, "top1": v} for i, v in enumerate(values)]
    for h, extra in zip(out, heads or []):
        h["heads"] = extra
    return out


def test_labels_round_trip_and_published_names():
    assert metric_label("median_last_n", 10) == "median_last10"
    assert metric_label("best_last_n", 10) == "best_last10"
    assert metric_label("best_head_median_last_n", 10) == "best_head_median_last10"
    assert metric_label("best", 10) == "best"
    for label in ("median_last10", "median_last5", "best_last10", "best_head_median_last10", "last"):
        metric, n = parse_metric_label(label)
        assert metric_label(metric, n or 10) == label
    assert parse_metric_label("mean_best_3trials") == ("best", None)
    with pytest.raises(ValueError, match="names no mixbench metric"):
        parse_metric_label("top5_median_last10")
    with pytest.raises(ValueError, match="did you mean 'best_last_n'"):
        metric_label("best_lastn", 10)


def test_best_of_last_n():
    h = hist([90.0, 10.0, 20.0, 30.0])
    assert metric_value(h, "best_last_n", 3) == 30.0  # 90 is older than the last 3
    assert metric_value(h, "best", 3) == 90.0
    assert metric_value(h, "best_last_n", 10) == 90.0  # fewer than N: all of them


def test_openmixup_window_for_small_and_large_n():
    h = hist([1.0] * 30, heads=[{"mix_q": 1.0}] * 30)
    # record_num >= 10: epochs >= E - n - 1; below 10: >= E - n
    assert best_head_window(h, 10) == list(range(19, 31))
    assert best_head_window(h, 5) == list(range(25, 31))


def test_best_head_median_picks_head_and_window_as_openmixups_summary():
    # 12 evaluations (epochs 9..20); EMA one-hot head 60 then 90 at the last epoch; online
    # mixed head 80 except 40 at the last: windows 9..19 and 9..20
    heads = [{"mix_q": 80.0, "one_q": 70.0, "mix_k": 75.0, "one_k": 60.0} for _ in range(11)]
    heads.append({"mix_q": 40.0, "one_q": 70.0, "mix_k": 75.0, "one_k": 90.0})
    h = hist([80.0] * 11 + [40.0], start=9, heads=heads)
    found = best_head_median(h, 10)
    # 9..19: medians 80, 70, 75, 60 -> 80 (mix_q); 9..20: 80, 70, 75, 60 -> 80: the tie keeps
    # the shorter window, as np.argmax keeps the first
    assert found == {"value": 80.0, "head": "mix_q", "first_epoch": 9, "last_epoch": 19}
    assert best_head_median(hist([1.0, 2.0]), 10) is None  # no heads recorded
    # the longer window wins when it is better: the last evaluation lifts the median
    heads2 = [{"mix_q": float(v)} for v in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 50]]
    found2 = best_head_median(hist([0.0] * 12, start=9, heads=heads2), 10)
    assert found2["value"] == 6.5 and found2["last_epoch"] == 20  # median of 1..11, 50


def test_summary_keeps_our_number_and_adds_the_heads_reading():
    heads = [{"mix_q": 70.0, "mix_k": 75.0}] * 3
    m = summarize_history(hist([70.0] * 3, heads=heads), 10)
    assert m["top1_median_last_n"] == 70.0 and m["top1_best_head_median_last_n"] == 75.0
    assert m["best_head"] == {"head": "mix_k", "first_epoch": 1, "last_epoch": 2}
    assert "top1_best_head_median_last_n" not in summarize_history(hist([70.0]), 10)


def test_shortfall_names_the_epochs_a_published_number_reads():
    full = hist([1.0] * 10, start=191)
    assert metric_shortfall(full, "median_last_n", 10, 200) is None
    assert metric_shortfall(full, "last", 10, 200) is None
    assert "no evaluation of 1 of them (first: epoch 200)" in metric_shortfall(
        full[:-1], "median_last_n", 10, 200
    )
    assert "recorded its online head only" in metric_shortfall(full, "best_head_median_last_n", 10, 200)


def test_schema_two_requires_the_settings_and_reads_schema_one():
    data = {
        "schema": SCHEMA_VERSION,
        "status": "finished",
        "run": {k: 1 for k in ("name", "method", "dataset", "backbone", "epochs", "seed", "config_hash")},
        "metrics": {},
        "history": [],
        "cost": {},
        "env": {},
    }
    with pytest.raises(ResultFileError, match="method_settings must be an object"):
        validate_result(data)
    validate_result({**data, "schema": 1})  # the first schema has no settings
    data["run"]["method_settings"] = {}
    assert validate_result(data) is data


def test_method_settings_of_the_method_section():
    new = {
        "model": {
            "backbone": {"type": "ResNetCIFAR"},
            "head": {"type": "LinearHead"},
            "loss": {"type": "LabelSmoothingCrossEntropy", "smoothing": 0.1},
        },
        "method": {
            "name": "DecoupleMix",
            "mixer": {"type": "Mixup", "alpha": 0.2},
            "loss": {"type": "DecoupledMixupLoss", "eta": 0.1},
        },
    }
    assert method_settings(new) == {
        "classifier": {"type": "MixupClassifier"},
        "mixer": {"type": "Mixup", "alpha": 0.2},
        "loss": {"type": "DecoupledMixupLoss", "eta": 0.1},  # another type replaces the recipe's
        "paramwise_cfg": {},
        "hooks": [],
    }
    keeps = {**new, "method": {"mixer": {"type": "Mixup", "alpha": 0.2}}}
    assert method_settings(keeps)["loss"] == {"type": "LabelSmoothingCrossEntropy", "smoothing": 0.1}
    automix = {
        "model": new["model"],
        "method": {
            "classifier": {"type": "AutoMixClassifier", "alpha": 2.0},
            "paramwise_cfg": {"custom_keys": {"mix_block": {"lr_mult": 1.0}}},
        },
    }
    assert method_settings(automix) == {
        "classifier": {"type": "AutoMixClassifier", "alpha": 2},
        "mixer": {"type": "Vanilla"},
        "loss": {"type": "LabelSmoothingCrossEntropy", "smoothing": 0.1},
        "paramwise_cfg": {"custom_keys": {"mix_block": {"lr_mult": 1}}},
        "hooks": [],
    }
