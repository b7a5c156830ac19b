"""The learnable methods' evaluation: our one-head top-1 and, beside it, the four heads that
OpenMixup evaluates (online/EMA encoder x mixed/one-hot head), through to result.json."""

import copy

import pytest
import torch
from mbtest.training import train_on_digits

from mixbench.engine.metrics import Accuracy, head_top1
from mixbench.models import AdAutoMixClassifier, AutoMixClassifier, SAMixClassifier
from mixbench.results import best_head_median

TINY = {"type": "ResNetCIFAR", "depth": 8, "width": 8, "in_channels": 1}
HEAD = {"type": "LinearHead", "num_classes": 5}


def batch(b=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 16, 16, generator=g), torch.arange(b) % 5


@pytest.mark.parametrize("cls", [AutoMixClassifier, SAMixClassifier, AdAutoMixClassifier])
def test_predict_gives_the_four_heads_and_our_head_as_logits(cls):
    torch.manual_seed(0)
    clf = cls(backbone=TINY, head=HEAD, mask_stage=2).eval()
    clf.init_weights()
    x, y = batch()
    with torch.no_grad():  # move the EMA parts away from the online ones
        for p in [*clf.backbone_k.parameters(), *clf.head_k.parameters(), *clf.head_one_k.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    (out,) = clf.predict(x, y)
    feat_q, feat_k = clf.neck(clf.backbone(x)), clf.neck_k(clf.backbone_k(x))
    expected = {
        "mix_q": clf.head(feat_q),
        "one_q": clf.head_one(feat_q),
        "mix_k": clf.head_k(feat_k),
        "one_k": clf.head_one_k(feat_k),
    }
    assert set(out["heads"]) == set(expected)
    for name, logits in expected.items():
        torch.testing.assert_close(out["heads"][name], logits)
    torch.testing.assert_close(out["logits"], expected["mix_q"])  # the run's top-1: online, mixed
    assert not torch.allclose(out["heads"]["mix_k"], out["heads"]["mix_q"])


def test_ema_one_hot_head_follows_the_online_one_by_the_momentum():
    torch.manual_seed(0)
    clf = AutoMixClassifier(backbone=TINY, head=HEAD, mask_stage=2)
    clf.init_weights()
    assert all(torch.equal(a, b) for a, b in zip(clf.head_one_k.parameters(), clf.head_one.parameters()))
    assert not any(p.requires_grad for p in clf.head_one_k.parameters())
    with torch.no_grad():
        for p in clf.head_one.parameters():
            p.add_(1.0)
    before = [p.clone() for p in clf.head_one_k.parameters()]
    online = [p.clone() for p in clf.head_one.parameters()]
    clf.momentum = 0.9
    clf.momentum_update()
    for k, k0, q in zip(clf.head_one_k.parameters(), before, online):
        torch.testing.assert_close(k, 0.9 * k0 + 0.1 * q)


def test_without_a_one_hot_head_two_heads_are_evaluated():
    clf = AutoMixClassifier(backbone=TINY, head=HEAD, mask_stage=2, one_hot_weight=0.0).eval()
    assert clf.head_one_k is None
    (out,) = clf.predict(*batch())
    assert set(out["heads"]) == {"mix_q", "mix_k"}


def test_accuracy_reports_each_head_beside_top1():
    metric = Accuracy(topk=(1, 2))
    labels = torch.tensor([0, 1, 2, 0])
    logits = torch.tensor([[3.0, 2, 1], [3, 2, 1], [1, 2, 3], [1, 3, 2]])  # ranks 0, 1, 0, 2
    good = torch.nn.functional.one_hot(labels, 3).float()  # all right
    bad = torch.roll(good, 1, dims=1)  # all wrong
    metric.process(
        None, [{"logits": logits[:2], "labels": labels[:2], "heads": {"a": good[:2], "b": bad[:2]}}]
    )
    metric.process(
        None,
        [
            {
                "logits": logits[2:],
                "labels": labels[2:],
                "heads": {"a": good[2:], "b": torch.stack([good[2], bad[3]])},
            }
        ],
    )
    out = metric.compute_metrics(metric.results)
    assert out == {"top1": 50.0, "top2": 75.0, "head_a_top1": 100.0, "head_b_top1": 25.0}
    assert head_top1(out) == {"a": 100.0, "b": 25.0}


def test_accuracy_refuses_heads_on_some_batches_only():
    metric = Accuracy(topk=(1,))
    labels = torch.tensor([0, 1])
    logits = torch.eye(2)
    metric.process(None, [{"logits": logits, "labels": labels, "heads": {"a": logits}}])
    metric.process(None, [{"logits": logits, "labels": labels}])
    with pytest.raises(ValueError, match="same heads for every batch"):
        metric.compute_metrics(metric.results)


def test_result_json_records_the_heads_and_openmixups_reading(tmp_path):
    result = train_on_digits(
        tmp_path,
        "automix",
        {"model": {"backbone": copy.deepcopy(TINY)}, "method": {"classifier": {"mask_stage": 2}}},
        epochs=2,
    )
    history = result["history"]
    assert all(set(h["heads"]) == {"mix_q", "one_q", "mix_k", "one_k"} for h in history)
    assert all(h["heads"]["mix_q"] == h["top1"] for h in history)  # our head is the top-1
    m = result["metrics"]
    found = best_head_median(history, 10)
    assert m["top1_best_head_median_last_n"] == found["value"]
    # two evaluations, both in the window: the better of {epoch 1} and {1, 2} over the heads
    candidates = list(history[0]["heads"].values()) + [
        (history[0]["heads"][k] + history[1]["heads"][k]) / 2 for k in history[0]["heads"]
    ]
    assert found["value"] == pytest.approx(max(candidates))
    assert m["top1_median_last_n"] == pytest.approx((history[0]["top1"] + history[1]["top1"]) / 2)
    assert result["run"]["method_settings"]["classifier"]["type"] == "AutoMixClassifier"
