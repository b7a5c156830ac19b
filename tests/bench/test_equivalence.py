"""bench/equivalence.py end to end on a tiny run: both sides train, the JSON holds what the
docs table is made from, and the summary is computed from the runs."""

import importlib.util
import json
from pathlib import Path

import pytest
from mbtest.repo import REPO

DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def load_bench():
    spec = importlib.util.spec_from_file_location("equivalence", REPO / "bench" / "equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


def test_tiny_run_trains_both_sides_and_writes_the_summary(bench, tmp_path):
    if not Path(DATA).is_file():
        pytest.fail(f"{DATA} missing: install Debian's dataset-fashion-mnist")
    out = tmp_path / "equivalence.json"
    report = bench.main(
        [
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--subset",
            "1024",
            "--val-subset",
            "500",
            "--methods",
            "Vanilla",
            "Mixup",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["runs"] == json.loads(json.dumps(report["runs"]))
    assert (saved["epochs"], saved["subset"], saved["val_subset"], saved["threads"]) == (1, 1024, 500, 1)
    assert sorted((r["method"], r["side"]) for r in saved["runs"]) == [
        ("Mixup", "engine"),
        ("Mixup", "plain"),
        ("Vanilla", "engine"),
        ("Vanilla", "plain"),
    ]
    for run in saved["runs"]:
        # 8 iterations of 128 images: well above chance (10 classes) on both sides
        assert run["top1"] > 20.0, run
        assert run["img_per_s"] > 0 and run["img_per_cpu_s"] > 0 and run["train_s"] > 0
    assert list(saved["summary"]) == ["Vanilla", "Mixup"]
    for method, s in saved["summary"].items():
        eng, pla = (
            {r["side"]: r for r in saved["runs"] if r["method"] == method}[k] for k in ("engine", "plain")
        )
        assert s["seeds"] == [0]
        assert s["diff"] == pytest.approx(eng["top1"] - pla["top1"])
        assert s["ci95"] == [None, None]  # one seed a side: no interval
        assert s["speed_ratio"] == pytest.approx(eng["img_per_s"] / pla["img_per_s"])
        assert s["speed_ratio_cpu"] == pytest.approx(eng["img_per_cpu_s"] / pla["img_per_cpu_s"])


def test_plain_loop_refuses_a_method_option_it_does_not_implement(bench):
    cfg = bench.engine_config("Mixup", 1, 0, 256, 100)
    assert bench.plain_settings(cfg, "Mixup") == {"alpha": 1.0}
    cfg["method"]["mixer"]["lam_mode"] = "elem"
    with pytest.raises(ValueError, match="'lam_mode' is not implemented by the plain loop"):
        bench.plain_settings(cfg, "Mixup")
    automix = bench.plain_settings(bench.engine_config("AutoMix", 1, 0, 256, 100), "AutoMix")
    assert (
        automix["alpha"],
        automix["mask_stage"],
        automix["mix_block_lr"],
        automix["mix_block_min_lr"],
    ) == (2.0, 3, 0.1, 0.05)


def test_engine_config_with_another_recipe_is_refused(bench):
    cfg = bench.engine_config("Vanilla", 1, 0, 256, 100)
    cfg["optim_wrapper"]["optimizer"]["lr"] = 0.2
    with pytest.raises(ValueError, match="optim_wrapper.optimizer.lr = 0.2 but the plain loop"):
        bench.check_recipe(cfg)
    with pytest.raises(SystemExit, match="did you mean 'CutMix'"):
        bench.parse_args(["--methods", "Cutmix"])


def test_plain_augment_keeps_pixels_and_gives_the_standard_layout(bench):
    import torch

    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    out = bench.augment(x)
    # the standard (N, C, H, W) strides, not the ambiguous channels-last ones of the gather
    assert out.dtype == torch.uint8 and out.stride() == (784, 784, 28, 1)
    # every output is a (possibly flipped) 28x28 window of the image reflect-padded by 2
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    for img, src in zip(out, padded):
        windows = [src[:, dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(img, w) or torch.equal(img, w.flip(2)) for w in windows)
