"""Every aggregate of the leaderboard against numbers computed by hand (see mbtest.leaderboard)."""

import math

import pytest
from mbtest.leaderboard import history_for, write_reference_runs

from mixbench.leaderboard import build_leaderboard, canonical_method, ingest_paths, lookup_reported
from mixbench.leaderboard.aggregate import average_ranks, run_metric, welch_interval, welch_p_value

T_975_DF2 = 4.302652729911275  # Student's t 97.5% quantile, 2 degrees of freedom (tables)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_reference_runs(root)
    url = str(root / "results.db")
    report = ingest_paths([root], db_url=url)
    assert report.ok, report.summary()
    return url


@pytest.fixture(scope="module")
def lb(db):
    return build_leaderboard(db)


def cell(lb, dataset, epochs, method):
    (c,) = [c for c in lb.tables[(dataset, "resnet18_cifar", epochs, "")] if c.method == method]
    return c


def test_run_metric_median_best_last():
    h = [{"epoch": i + 1, "top1": v} for i, v in enumerate(history_for(70.0))]
    assert run_metric(h, "median_last_n", 10) == 70.0
    assert run_metric(h, "best", 10) == 71.0
    assert run_metric(h, "last", 10) == 69.0
    # last 3 of [5, 6, 70, 70, 71x4, 69x4] are 69, 69, 69
    assert run_metric(h, "median_last_n", 3) == 69.0
    # all 12 sorted: 5, 6, 69 x4, 70, 70, 71 x4 -> middle pair (69, 70)
    assert run_metric(h, "median_last_n", 12) == 69.5
    assert (
        run_metric([{"epoch": 1, "top1": 1.0}, {"epoch": 2, "top1": 4.0}], "median_last_n", 10) == 2.5
    )  # fewer than N
    # best of the last 10: [70, 70, 71 x4, 69 x4] -> 71; best of the last 4 (69 x4) -> 69
    assert run_metric(h, "best_last_n", 10) == 71.0 and run_metric(h, "best_last_n", 4) == 69.0
    assert run_metric([], "best", 10) is None


def test_mean_std_ci_over_seeds(lb):
    c = cell(lb, "cifar100", 200, "Vanilla")
    assert c.seeds == [0, 1, 2] and c.values == [76.0, 76.5, 77.0]
    assert c.mean == pytest.approx(76.5)
    assert c.std == pytest.approx(0.5)  # sample std: sqrt((0.25 + 0 + 0.25) / 2)
    half = T_975_DF2 * 0.5 / math.sqrt(3)
    assert (c.ci_low, c.ci_high) == (pytest.approx(76.5 - half), pytest.approx(76.5 + half))
    m = cell(lb, "cifar100", 200, "Mixup")
    # the older duplicate of seed 0 (60.0) is dropped: 78.0, 78.4, 79.1
    assert m.values == [78.0, 78.4, 79.1]
    assert m.mean == pytest.approx(78.5)
    assert m.std == pytest.approx(math.sqrt(0.31))  # (0.25 + 0.01 + 0.36) / 2


def test_delta_and_welch_significance(lb):
    m = cell(lb, "cifar100", 200, "Mixup")
    assert m.delta == pytest.approx(2.0)
    # Welch: v_a = 0.31/3, v_b = 0.25/3, t = 2 / sqrt(v_a + v_b) = 4.6291,
    # df = (v_a + v_b)^2 / (v_a^2/2 + v_b^2/2) = 3.9546, two-sided p = 0.0101
    va, vb = 0.31 / 3, 0.25 / 3
    assert 2.0 / math.sqrt(va + vb) == pytest.approx(4.62910, abs=1e-5)
    assert (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2) == pytest.approx(3.95460, abs=1e-5)
    assert m.p_value == pytest.approx(0.01008, abs=5e-5)
    assert m.significant is True
    c = cell(lb, "cifar100", 200, "CutMix")
    assert c.delta == pytest.approx(0.1)
    assert c.std == pytest.approx(0.2)
    assert c.p_value > 0.7 and c.significant is False
    v = cell(lb, "cifar100", 200, "Vanilla")
    assert v.is_reference and v.delta is None and v.p_value is None


def test_welch_matches_scipy_reference():
    from scipy import stats

    a, b = [78.0, 78.4, 79.1, 77.2], [76.0, 76.5, 77.0]
    assert welch_p_value(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p_value([1.0], b) is None
    assert welch_p_value([1.0, 1.0], [2.0, 2.0]) is None  # no variance: undefined


def test_welch_interval_matches_hand_values_and_scipy():
    from scipy import stats

    a, b = [78.0, 78.4, 79.1, 77.2], [76.0, 76.5, 77.0]
    diff, low, high = welch_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(78.175 - 76.5)
    assert (low, high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    # the cell of test_delta_and_welch_significance: diff 2, se sqrt(0.31/3 + 0.25/3),
    # df 3.9546; t_{0.975, 3.9546} = 2.789 (between the tables' 3.182 at 3 and 2.776 at 4)
    diff, low, high = welch_interval([80.0, 80.4, 81.1], [78.0, 78.5, 79.0])
    half = 2.0 - low
    assert high - 2.0 == pytest.approx(half)
    assert half / math.sqrt(0.31 / 3 + 0.25 / 3) == pytest.approx(
        float(stats.t.ppf(0.975, 3.95460)), abs=1e-4
    )
    assert welch_interval([1.0], b) == (pytest.approx(1.0 - 76.5), None, None)


def test_one_seed_says_so_without_error_bar(lb):
    p = cell(lb, "cifar100", 200, "PuzzleMix")
    assert p.n == 1 and p.std is None and p.ci_low is None and p.ci_high is None
    assert p.delta == pytest.approx(3.5) and p.p_value is None and p.significant is None


def test_cost_relative_to_vanilla_memory_and_device_hours(lb):
    assert cell(lb, "cifar100", 200, "Mixup").rel_s_per_iter == pytest.approx(1.1)
    assert cell(lb, "cifar100", 200, "PuzzleMix").rel_s_per_iter == pytest.approx(2.5)
    assert cell(lb, "cifar100", 200, "Vanilla").rel_s_per_iter == pytest.approx(1.0)
    v = cell(lb, "cifar100", 200, "Vanilla")
    assert v.peak_mem_mb == pytest.approx(1100.0)  # mean of 1000, 1100, 1200
    assert v.device_hours == pytest.approx(4.0) and v.device_kind == "GPU"  # 7200 s x 2
    c10 = cell(lb, "cifar10", 200, "Vanilla")
    assert c10.device_hours == pytest.approx(0.5) and c10.device_kind == "CPU"


def test_ranks_ties_dataset_and_average_rank(lb):
    assert [(c.method, c.rank) for c in lb.tables[("cifar100", "resnet18_cifar", 200, "")]] == [
        ("PuzzleMix", 1.0),
        ("Mixup", 2.0),
        ("CutMix", 3.0),
        ("Vanilla", 4.0),
    ]
    assert [(c.method, c.rank) for c in lb.tables[("cifar10", "resnet18_cifar", 200, "")]] == [
        ("CutMix", 1.5),
        ("Mixup", 1.5),
        ("Vanilla", 3.0),
    ]
    assert [c.is_best for c in lb.tables[("cifar10", "resnet18_cifar", 200, "")]] == [True, True, False]
    # cifar100: Mixup ranks 2 (200e) and 1 (400e) -> 1.5; Vanilla 4 and 2 -> 3
    assert lb.dataset_ranks["Mixup"] == {"cifar100": 1.5, "cifar10": 1.5}
    assert lb.dataset_ranks["Vanilla"] == {"cifar100": 3.0, "cifar10": 3.0}
    assert lb.average_rank == [
        ("PuzzleMix", 1.0, 1),
        ("Mixup", 1.5, 2),
        ("CutMix", 2.25, 2),
        ("Vanilla", 3.0, 2),
    ]
    assert average_ranks([3.0, 5.0, 5.0, 1.0]) == [3.0, 1.5, 1.5, 4.0]


def test_reported_vs_reproduced_like_for_like(lb, db):
    # OpenMixup, CIFAR-10 ResNet-18 200 epochs (median_last10): Vanilla 94.87, MixUp 95.70,
    # CutMix 96.11; CIFAR-100: Vanilla 76.42, MixUp 78.52, CutMix 79.45, PuzzleMix 79.96
    m10 = cell(lb, "cifar10", 200, "Mixup")
    assert m10.reported.method == "MixUp" and m10.reported.top1 == 95.70
    assert m10.diff_vs_reported == pytest.approx(91.0 - 95.70)
    assert m10.reported_delta == pytest.approx(95.70 - 94.87)
    assert cell(lb, "cifar100", 200, "CutMix").reported_delta == pytest.approx(79.45 - 76.42)
    assert cell(lb, "cifar100", 200, "PuzzleMix").diff_vs_reported == pytest.approx(80.0 - 79.96)
    assert cell(lb, "cifar10", 200, "Vanilla").reported_delta is None  # the reference itself
    best = build_leaderboard(db, metric="best")
    b = cell(best, "cifar10", 200, "Mixup")
    assert b.values == [92.0]  # best of history_for(91.0)
    # the published number is read the way OpenMixup read it (median_last10), whatever the
    # table metric: our median of the last 10 is 91.0, so the difference is unchanged
    assert b.reported.top1 == 95.70 and b.comparison.metric_label == "median_last10"
    assert b.comparison.ours == pytest.approx(91.0)
    assert b.diff_vs_reported == pytest.approx(91.0 - 95.70)


def test_not_finished_and_duplicates_are_listed_not_counted(lb):
    assert [r.name for r in lb.in_progress] == ["still_running"]
    assert [r.name for r in lb.failed] == ["crashed"]
    assert [(r.name, "only the newer one counts" in why) for r, why in lb.excluded] == [
        ("old_mixup_s0", True)
    ]
    assert sum(c.n for c in lb.cells) == 15  # 15 finished runs, one per (cell, seed)


def test_method_names_match_case_insensitively_with_aliases():
    assert canonical_method("MixUp") == canonical_method("Mixup") == "mixup"
    assert canonical_method("Co-Mixup") == canonical_method("CoMixup") == "comixup"
    assert canonical_method("manifold_mixup") == "manifoldmix"
    assert canonical_method("AttentiveMixPlus") == canonical_method("AttentiveMix+")
    assert canonical_method("DeiTMixer") == "deit" and canonical_method("ERM") == "vanilla"
    assert lookup_reported("cifar100", "resnet18_cifar", 200, "attentivemix_plus") is not None
    assert lookup_reported("cifar100", "resnet18_cifar", 200, "NoSuchMix") is None


def test_filters_and_bad_filter_key(db):
    lb10 = build_leaderboard(db, filters={"dataset": "cifar10"})
    assert list(lb10.tables) == [("cifar10", "resnet18_cifar", 200, "")]
    lb400 = build_leaderboard(db, filters={"epochs": "400"})
    assert [c.method for c in lb400.cells] == ["Mixup", "Vanilla"]
    with pytest.raises(ValueError, match="cannot filter on colour"):
        build_leaderboard(db, filters={"colour": "red"})
