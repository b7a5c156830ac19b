"""A published number is set against ours only like for like: runs that differ from the
published cell in each field (method option, dataset, backbone, epochs, metric) get no
difference, and the reason says which."""

import pytest
from mbtest.leaderboard import RESNET18_CIFAR, SETTINGS, make_result, plain_method

from mixbench.fingerprint import setting_differences
from mixbench.leaderboard import build_leaderboard, ingest_paths, lookup_reported
from mixbench.leaderboard.aggregate import RunRecord
from mixbench.leaderboard.compare import compare
from mixbench.leaderboard.report_md import markdown_report

# OpenMixup, CIFAR-100 ResNet-18, 200 epochs, median of the last 10: MixUp 78.52
MIXUP = lookup_reported("cifar100", "resnet18_cifar", 200, "Mixup")


def run(
    top1=None,
    name="r",
    dataset="cifar100",
    backbone="resnet18_cifar",
    epochs=200,
    settings="Mixup",
    backbone_settings=None,
    eval_epochs=None,
    heads=None,
):
    """A RunRecord evaluated at each of its last 12 epochs (or at eval_epochs)."""
    top1 = top1 or [70.0] * 12
    at = eval_epochs or list(range(epochs - len(top1) + 1, epochs + 1))
    history = [{"epoch": e, "top1": v} for e, v in zip(at, top1)]
    for h, extra in zip(history, heads or []):
        h["heads"] = extra
    return RunRecord(
        id=1,
        name=name,
        method="Mixup",
        dataset=dataset,
        backbone=backbone,
        epochs=epochs,
        seed=0,
        status="finished",
        updated_ts=0.0,
        source_path=None,
        history=history,
        method_settings=SETTINGS[settings] if isinstance(settings, str) else settings,
        backbone_settings=backbone_settings or RESNET18_CIFAR,
    )


def test_same_settings_compare_and_give_the_difference():
    comp = compare([run([70.0] * 2 + [80.0] * 10), run([78.0] * 12)], MIXUP)
    assert comp.comparable and comp.reasons == []
    assert comp.ours == pytest.approx((80.0 + 78.0) / 2)  # median of the last 10, mean of runs
    assert comp.diff == pytest.approx(79.0 - 78.52)


@pytest.mark.parametrize(
    "changed, reason",
    [
        (dict(settings=plain_method({"type": "Mixup", "alpha": 0.2})), "mixer.alpha 0.2 vs published 1"),
        (
            dict(settings=plain_method({"type": "Mixup", "alpha": 1.0, "prob": 0.5})),
            "mixer.prob 0.5 set here, not in the published setting",
        ),
        (
            dict(settings=plain_method({"type": "CutMix", "alpha": 1.0})),
            "mixer.type CutMix vs published Mixup",
        ),
        (dict(dataset="cifar10"), "dataset cifar10 vs published cifar100"),
        (dict(backbone="resnet34_cifar"), "backbone resnet34_cifar vs published resnet18_cifar"),
        (dict(backbone_settings={**RESNET18_CIFAR, "width": 32}), "backbone width 32 vs published 64"),
        (dict(epochs=400), "epochs 400 vs published 200"),
        (
            dict(eval_epochs=list(range(145, 201, 5))),  # val_interval 5: 2 of the last 10 epochs
            "metric differs: median_last10 reads epochs 191-200 of 200, each evaluated; this run "
            "has no evaluation of 8 of them (first: epoch 191)",
        ),
        (dict(settings=None), "records no method settings"),
    ],
)
def test_each_differing_field_refuses_the_difference(changed, reason):
    comp = compare([run(**changed)], MIXUP)
    assert not comp.comparable and comp.diff is None
    assert any(reason in r for r in comp.reasons), comp.reasons


def test_runs_of_one_cell_with_different_settings_are_not_compared():
    other = run(name="b", settings=plain_method({"type": "Mixup", "alpha": 0.4}))
    comp = compare([run(name="a"), other], MIXUP)
    assert comp.diff is None
    assert any(
        "the cell's runs differ in method settings (a vs b" in r and "mixer.alpha" in r for r in comp.reasons
    ), comp.reasons


def test_known_openmixup_differences_are_named_as_people_know_them():
    smooth = lookup_reported("cifar100", "resnet18_cifar", 200, "SmoothMix")
    ours = plain_method({"type": "SmoothMix", "alpha": 0.2})  # our corrected SmoothMix
    comp = compare([run(settings=ours)], smooth)
    assert comp.diff is None
    assert (
        "SmoothMix label weight corrected (OpenMixup weights y_a by the partner's share, a bug "
        "in its code)" in comp.reasons
    )
    assert any(r.startswith("SmoothMix centre: OpenMixup's Gaussian") for r in comp.reasons)
    same = compare([run(settings=smooth.method_settings)], smooth)  # the reproduction file's
    assert same.comparable and same.diff is not None
    samix = lookup_reported("cifar100", "resnet18_cifar", 200, "SAMix")
    settings = {
        **samix.method_settings,
        "classifier": {
            **samix.method_settings["classifier"],
            "mix_block_loss": {"type": "EtaBalancedMixupLoss", "eta": 0.5},
        },
    }
    reasons = compare([run(settings=settings)], samix).reasons
    assert any(r.startswith("SAMix eta: OpenMixup's effective value is 1.0") for r in reasons)


def test_a_cell_without_published_settings_is_never_compared():
    deit = lookup_reported("cifar100", "deit_small", 200, "Mixup")
    assert deit.metric == "best_last10" and deit.method_settings is None
    comp = compare([run(backbone="deit_small", settings=plain_method({"type": "Mixup", "alpha": 0.8}))], deit)
    assert comp.diff is None and comp.reasons[0].startswith("published settings not recorded")
    # our value is still read the published way: the best of the last 10
    assert comp.ours == 70.0


def test_learnable_cells_read_the_best_of_four_heads():
    automix = lookup_reported("cifar100", "resnet18_cifar", 200, "AutoMix")
    assert automix.metric == "best_head_median_last10"
    one_head = compare([run(settings=automix.method_settings)], automix)
    assert one_head.diff is None and one_head.reasons[0].startswith(
        "metric differs: the published number is the best of OpenMixup's four heads"
    )
    # epochs 189..200 with heads; the EMA mixed head is best: 77, 78, ..., 87 then 50.
    # OpenMixup's windows: 189..199 -> median 82; 189..200 -> (81 + 82) / 2 = 81.5; it keeps
    # 82 (a plain median of the last 10, 79..87 and 50, would say 82.5)
    mix_k = [77.0 + i for i in range(11)] + [50.0]
    heads = [{"mix_q": 70.0, "one_q": 69.0, "mix_k": v, "one_k": 60.0} for v in mix_k]
    comp = compare([run(settings=automix.method_settings, heads=heads)], automix)
    assert comp.comparable and comp.ours == pytest.approx(82.0)
    assert comp.diff == pytest.approx(82.0 - automix.top1)


def test_setting_differences_words_and_canonical_numbers():
    assert setting_differences({"a": 1.0, "b": [1, 2]}, {"a": 1, "b": (1, 2)}) == []
    assert setting_differences({"m": {"x": 1}}, {"m": {"x": 2, "y": 3}}) == [
        "m.x 1 vs published 2",
        "m.y unset here, published 3",
    ]
    assert setting_differences({"m": {"x": 1}}, {"m": {"x": 2}}, explain={"m": "M differs"}) == ["M differs"]


def test_leaderboard_shows_mismatches_apart_with_the_reason(tmp_path):
    for seed in (0, 1):
        make_result(tmp_path, "Mixup", seed, [78.0] * 12, epochs=200)
        make_result(
            tmp_path,
            "CutMix",
            seed,
            [79.0] * 12,
            epochs=200,
            method_settings=plain_method({"type": "CutMix", "alpha": 1.0}),
        )
    make_result(tmp_path, "Vanilla", 0, [76.0] * 12, epochs=200, schema=1)
    url = str(tmp_path / "r.db")
    assert ingest_paths([tmp_path], db_url=url).ok
    lb = build_leaderboard(url)
    cells = {c.method: c for c in lb.cells}
    assert cells["Mixup"].diff_vs_reported == pytest.approx(78.0 - 78.52)
    assert cells["CutMix"].diff_vs_reported is None and cells["Vanilla"].diff_vs_reported is None
    assert "mixer.alpha 1.0 vs published 0.2" in cells["CutMix"].comparison.reasons
    md = markdown_report(lb)
    cutmix_row = next(line for line in md.splitlines() if "| CutMix |" in line)
    assert "| — |" in cutmix_row and "mixer.alpha 1.0 vs published 0.2" in cutmix_row
    assert "records no method settings (a result.json of schema 1)" in md


def test_published_options_are_options_of_our_classes_or_named_differences():
    """Every option a published cell states is a constructor argument of our class, or a
    known OpenMixup behaviour that no option reproduces yet (then ``settings_explain`` names
    it, and no run can match the cell until the option exists)."""
    import inspect

    import mixbench.models  # noqa: F401  (registers the classifiers and losses)
    from mixbench.leaderboard.reported import load_reported
    from mixbench.registry import MIXERS, MODELS

    def accepted(cls) -> set:
        names = set()
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                params = inspect.signature(klass.__init__).parameters
                names |= set(params) - {"self", "kwargs"}
                if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                    break
        return names

    checked = 0
    for cell in load_reported().values():
        if cell.method_settings is None:
            continue
        for part, registry in (("classifier", MODELS), ("mixer", MIXERS), ("loss", MODELS)):
            options = dict(cell.method_settings[part])
            cls = registry.get(options.pop("type"))
            assert cls is not None, (cell, part)
            unknown = {f"{part}.{k}" for k in options if k not in accepted(cls)}
            assert unknown <= set(cell.settings_explain), (cell.method, cell.epochs, unknown)
            checked += 1
    assert checked >= 3 * 90


def test_heads_metric_as_table_metric_leaves_out_one_head_runs(tmp_path):
    heads = [{"mix_q": 70.0, "mix_k": 72.0}] * 12
    make_result(tmp_path, "AutoMix", 0, [70.0] * 12, epochs=200, heads=heads)
    make_result(tmp_path, "Mixup", 0, [75.0] * 12, epochs=200)
    url = str(tmp_path / "r.db")
    assert ingest_paths([tmp_path], db_url=url).ok
    lb = build_leaderboard(url, metric="best_head_median_last_n")
    assert [(c.method, c.values) for c in lb.cells] == [("AutoMix", [72.0])]
    assert "(`best_head_median_last10`)" in lb.protocol()
    (why,) = [w for r, w in lb.excluded if r.method == "Mixup"]
    assert "gives no best_head_median_last10" in why


def test_the_reproduction_sweeps_runs_are_like_for_like_with_their_published_cells():
    """Every run of configs/sweeps/reproduce_cifar100_r18*.yaml whose published cell states its
    settings records exactly those settings (method and backbone): the reproduction configs
    are the ones the leaderboard can set beside OpenMixup's numbers."""
    from mbtest.repo import REPO

    from mixbench.fingerprint import backbone_settings, method_settings
    from mixbench.sweep import load_sweep

    checked = set()
    for name in ("reproduce_cifar100_r18.yaml", "reproduce_cifar100_r18_automix.yaml"):
        for r in load_sweep(REPO / "configs/sweeps" / name).runs:
            cell = lookup_reported("cifar100", "resnet18_cifar", r.axes["epochs"], r.axes["method"])
            if cell is None or cell.method_settings is None:
                continue
            assert setting_differences(method_settings(r.config), cell.method_settings) == [], r.name
            assert setting_differences(backbone_settings(r.config), cell.backbone_settings) == [], r.name
            checked.add(r.axes["method"])
    assert {
        "Vanilla",
        "Mixup",
        "CutMix",
        "SmoothMix",
        "FMix",
        "GridMix",
        "ResizeMix",
        "PuzzleMix",
        "AutoMix",
        "SAMix",
    } <= checked
