"""Analysis toolkit: calibration, attacks, corruptions, occlusion, cost, on a tiny trained model."""

import json

import numpy as np
import pytest
import torch
from mbtest.repo import run_tool
from torchmetrics.classification import MulticlassCalibrationError

from mixbench.analysis.adversarial import fgsm
from mixbench.analysis.calibration import calibration_metrics, expected_calibration_error
from mixbench.analysis.common import evaluate, to_unit, top1
from mixbench.analysis.corruptions import CORRUPTIONS, corrupt
from mixbench.analysis.occlusion import occlusion_curve


def broken_independent_sort_ece(conf, correct, n_bins):
    """OpenMixup's variant: accuracies and confidences sorted independently, then binned."""
    conf, correct = np.sort(np.asarray(conf, float)), np.sort(np.asarray(correct, float))
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return total


def test_ece_hand_computed_and_differs_from_independent_sort():
    conf, correct = [0.9, 0.2, 0.7, 0.6], [0, 1, 1, 1]
    # bins (0, .5], (.5, 1]: {0.2: right} gap 0.8; {0.9 wrong, 0.7 right, 0.6 right}: acc 2/3,
    # conf 0.7333, gap 0.0667 -> ECE = 1/4 * 0.8 + 3/4 * 0.0667 = 0.25
    assert expected_calibration_error(torch.tensor(conf), torch.tensor(correct), 2) == pytest.approx(0.25)
    # On that set the independent sort happens to give 0.25 too; on this one it does not:
    # paired, {0.2: right} gap 0.8 and {0.9: wrong} gap 0.9 -> 0.85; sorted independently,
    # 0.2 is paired with "wrong" and 0.9 with "right" -> gaps 0.2 and 0.1 -> 0.15.
    conf2, correct2 = [0.9, 0.2], [0, 1]
    assert expected_calibration_error(torch.tensor(conf2), torch.tensor(correct2), 2) == pytest.approx(0.85)
    assert broken_independent_sort_ece(conf2, correct2, 2) == pytest.approx(0.15)


def test_ece_matches_torchmetrics():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 7, generator=g) * 3
    labels = torch.randint(0, 7, (500,), generator=g)
    ours = calibration_metrics(logits, labels, n_bins=15)["summary"]["ece"]
    ref = MulticlassCalibrationError(num_classes=7, n_bins=15, norm="l1")(logits.softmax(1), labels)
    assert ours == pytest.approx(float(ref) * 100, abs=1e-4)


def test_fgsm_eps0_is_clean_and_accuracy_never_grows_with_eps(trained):
    logits, labels = evaluate(trained.model, trained.dataset)
    clean = top1(logits, labels)
    assert clean > 30
    x = torch.stack([trained.dataset[i]["inputs"] for i in range(len(trained.dataset))])
    y = torch.stack([trained.dataset[i]["data_samples"] for i in range(len(trained.dataset))]).long()
    x = to_unit(x)
    accs = []
    for eps in (0.0, 2 / 255, 8 / 255, 32 / 255):
        with torch.no_grad():
            accs.append(top1(trained.model(fgsm(trained.model, x, y, eps)), y))
    assert accs[0] == pytest.approx(clean)
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < clean


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_shape_range_determinism(name):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    a = corrupt(images, name, severity=3, seed=5)
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, corrupt(images, name, severity=3, seed=5))
    assert not torch.equal(a, images)


def test_occlusion_at_zero_is_clean_accuracy(trained):
    logits, labels = evaluate(trained.model, trained.dataset)
    curve = occlusion_curve(trained.model, trained.dataset, fractions=(0.0, 0.5), patch_size=4)
    assert curve["curve"][0]["top1"] == pytest.approx(top1(logits, labels))


def test_calibration_tool_writes_json_and_png(trained, tmp_path):
    wd = trained.work_dir
    run_tool("tools/analysis/calibration.py", wd / "config.yaml", wd / "epoch_3.pth", "--max-samples", "100")
    out = json.loads((wd / "analysis" / "calibration.json").read_text())
    assert 0 <= out["summary"]["ece"] <= 100 and out["summary"]["nll"] > 0
    assert list((wd / "analysis").glob("*.png"))
