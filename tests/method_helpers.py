"""Helpers shared by the tests of single methods: a method file trained on digits and
resumed exactly, and a check that a mixer's extra pass leaves the model untouched."""

from __future__ import annotations

from tests.learnable.helpers import train_then_resume


def train_and_resume(tmp_path, name: str, overrides=None) -> tuple:
    """configs/methods/<name>.yaml on a width-16 ResNet-8, 2 epochs on 128 digits images,
    then again resumed from the epoch-1 checkpoint into a fresh work dir: both end with the
    same validation record and bit-identical weights. Returns ``(result, checkpoint)``."""
    import torch

    keep = {"default_hooks": {"checkpoint": {"max_keep_ckpts": 2}}}  # epoch_1.pth stays
    result, a, b = train_then_resume(tmp_path, name, {**keep, **(overrides or {})})
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"resumed run differs in {key}"
    return result, a


def check_model_untouched(mixer, clf) -> None:
    """A mixer's extra pass through ``clf`` (in train mode) leaves no gradient, no changed
    weight or BatchNorm statistic, and every train/eval flag as it was."""
    import torch

    from tests.mixers.helpers import make_batch

    clf.train()
    stats = {k: v.clone() for k, v in clf.state_dict().items()}
    x, y = make_batch()
    mixer(x, y, model=clf)
    assert clf.training and all(m.training for m in clf.modules())
    assert all(p.grad is None for p in clf.parameters())
    assert all(torch.equal(v, clf.state_dict()[k]) for k, v in stats.items())


def forward_batches_and_train(clf, x, y) -> tuple:
    """One ``clf.loss(x, y)``: the batch sizes the backbone saw, in order, and the losses;
    checks that every loss term alone sends a gradient to the head."""
    batches = []
    handle = clf.backbone.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    losses = clf.loss(x, y)
    handle.remove()
    for key in losses:
        clf.zero_grad(set_to_none=True)
        losses[key].backward(retain_graph=True)
        assert clf.head.fc.weight.grad.abs().sum() > 0, key
    return batches, losses
