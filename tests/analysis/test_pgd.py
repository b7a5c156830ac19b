"""PGD (Madry et al. 2018) on a tiny trained model: eps 0 is clean accuracy, PGD is at least
as strong as FGSM, the perturbation stays in the eps ball and in [0, 1]."""

import pytest
import torch

from mixbench.analysis.adversarial import fgsm, pgd, robust_accuracy
from mixbench.analysis.common import to_unit, top1


@pytest.fixture(scope="module")
def val_xy(trained):
    ds = trained.dataset
    x = to_unit(torch.stack([ds[i]["inputs"] for i in range(len(ds))]))
    y = torch.stack([torch.as_tensor(ds[i]["data_samples"]) for i in range(len(ds))]).long()
    return x, y


def accuracy(model, x, y):
    with torch.no_grad():
        return top1(model(x), y)


def test_pgd_eps0_is_clean_accuracy(trained, val_xy):
    x, y = val_xy
    adv = pgd(trained.model, x, y, eps=0.0, steps=3)
    assert torch.equal(adv, x)
    assert accuracy(trained.model, adv, y) == accuracy(trained.model, x, y)


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_pgd_no_weaker_than_fgsm_and_stays_in_the_ball(trained, val_xy, eps):
    x, y = val_xy
    gen = torch.Generator().manual_seed(0)
    adv = pgd(trained.model, x, y, eps, steps=10, generator=gen)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > eps / 2  # it did move
    clean = accuracy(trained.model, x, y)
    pgd_acc = accuracy(trained.model, adv, y)
    fgsm_acc = accuracy(trained.model, fgsm(trained.model, x, y, eps), y)
    assert pgd_acc <= fgsm_acc < clean, (pgd_acc, fgsm_acc, clean)


def test_robust_accuracy_summary_keys_and_reproducible(trained):
    kw = dict(eps=(8 / 255,), steps=3, batch_size=64, seed=3)
    a = robust_accuracy(trained.model, trained.dataset, **kw)
    b = robust_accuracy(trained.model, trained.dataset, **kw)
    assert set(a["summary"]) == {"clean_top1", "fgsm_eps8_top1", "pgd_eps8_top1"}
    assert a["summary"] == b["summary"]
    # 3 steps of eps/4 cannot reach the ball's edge: weaker than FGSM here, still an attack
    s = a["summary"]
    assert max(s["pgd_eps8_top1"], s["fgsm_eps8_top1"]) < s["clean_top1"]
    assert [r["step_size"] for r in a["attacks"]] == [8 / 255, 2 / 255]
