"""RandomChoiceMixer and the DeiT recipe: choice frequencies, the no-mixing remainder,
generator sharing, config building, errors."""

from pathlib import Path

import pytest
import torch
from mbtest.mixers import (
    check_batch_size_one,
    check_mask_identity,
    check_output,
    check_reproducible,
    make_batch,
    seeded,
)

from mixbench.mixers import CutMix, DeiTMixer, Mixup, RandomChoiceMixer

ROOT = Path(__file__).resolve().parents[2]


def chosen(out):
    if out.mask is not None:
        return "cutmix"
    return "none" if bool(out.lam.eq(1).all()) else "mixup"


def test_choice_frequencies_follow_probs_and_remainder_is_unmixed():
    x, y = make_batch(b=4, h=8, w=8)
    mixer = RandomChoiceMixer([Mixup(alpha=1.0), CutMix(alpha=1.0)], probs=[0.2, 0.5], generator=seeded(0))
    counts = {"mixup": 0, "cutmix": 0, "none": 0}
    for _ in range(600):
        out = check_output(mixer, x, y) if not counts["none"] else mixer(x, y)
        counts[chosen(out)] += 1
    # Multinomial(600, (0.2, 0.5, 0.3)): sds 9.8, 12.2, 11.2
    assert 90 <= counts["mixup"] <= 150 and 260 <= counts["cutmix"] <= 340
    assert 140 <= counts["none"] <= 220


def test_chosen_mixer_output_is_returned_as_is():
    x, y = make_batch()
    mixer = RandomChoiceMixer([CutMix(alpha=1.0)], probs=[1.0], generator=seeded(2))
    out = check_output(mixer, x, y, mask_method=True)
    check_mask_identity(out, x)


def test_one_seed_fixes_choice_and_child_draws():
    x, y = make_batch()
    check_reproducible(DeiTMixer(), x, y)
    mixer = DeiTMixer(generator=seeded(3))
    assert all(m.generator is mixer.generator for m in mixer.mixers)


def test_batch_size_one():
    check_batch_size_one(DeiTMixer())


def test_deit_recipe_and_its_config_build_the_same_mixer():
    from mixbench.config import load_config
    from mixbench.registry import build_mixer

    cfg = load_config(ROOT / "configs" / "methods" / "deit.yaml")
    built = build_mixer(cfg["method"]["mixer"])
    deit = DeiTMixer()
    assert isinstance(built, RandomChoiceMixer) and built.probs == deit.probs == [0.5, 0.5]
    assert [(type(m), m.alpha) for m in built.mixers] == [(Mixup, 0.8), (CutMix, 1.0)]
    assert [(type(m), m.alpha) for m in deit.mixers] == [(Mixup, 0.8), (CutMix, 1.0)]
    x, y = make_batch()
    built.generator, deit.generator = seeded(4), seeded(4)
    assert torch.equal(built(x, y).inputs, deit(x, y).inputs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mixers=[]), "at least one mixer"),
        (dict(mixers=[Mixup()], probs=[0.5, 0.5]), "1 mixers but 2 probs"),
        (dict(mixers=[Mixup(), CutMix()], probs=[0.7, 0.6]), "sum to at most 1"),
        (dict(mixers=[Mixup()], probs=[1.5]), r"probs\[0\] is a probability"),
        (dict(mixers=[{"type": "Mixup"}]), "must be a mixer instance"),
    ],
)
def test_bad_arguments_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomChoiceMixer(**kwargs)


@pytest.mark.parametrize("branch", ["mixup", "cutmix"])
def test_deit_recipe_equals_timm_given_the_same_draws(monkeypatch, branch):
    """DeiTMixer(pairing='reverse') and timm's Mixup(mixup_alpha=0.8, cutmix_alpha=1.0,
    switch_prob=0.5) give identical batches and targets for the same switch, lambda, box."""
    import numpy as np
    from timm.data import Mixup as TimmMixup

    x, y = make_batch(b=6, h=16, w=16)
    lam = float(np.float32(0.7))  # int(16 * sqrt(0.3)) = 8 px box
    deit = DeiTMixer(pairing="reverse")
    chosen_mixer = deit.mixers[0 if branch == "mixup" else 1]
    monkeypatch.setattr(deit, "choose", lambda: chosen_mixer)
    chosen_mixer.sample_lam = lambda index: torch.full((6,), lam, dtype=torch.float64)
    chosen_mixer.sample_lam_value = lambda: lam  # Mixup's one-lambda draw
    chosen_mixer.sample_centres = lambda x_, index: (torch.full((6,), 3), torch.full((6,), 12))
    ours = deit(x, y)

    # timm draws: rand() < mix_prob, rand() < switch_prob (True = CutMix), beta, box centre.
    rands = iter([0.0, 0.1 if branch == "cutmix" else 0.9])
    monkeypatch.setattr(np.random, "rand", lambda *a: next(rands))
    monkeypatch.setattr(np.random, "beta", lambda a, b, size=None: lam)
    centres = iter([3, 12])
    monkeypatch.setattr(np.random, "randint", lambda lo, hi=None, size=None: next(centres))
    timm = TimmMixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.0, num_classes=5)
    x_timm, target = timm(x.clone(), y.clone())
    assert torch.equal(ours.inputs, x_timm)
    torch.testing.assert_close(ours.target(5), target)
    assert (ours.mask is not None) == (branch == "cutmix")
