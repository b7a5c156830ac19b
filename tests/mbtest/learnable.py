"""Checks of the learnable and label-mixing methods (AutoMix-style classifiers, TransMix
and its ViT): the staged training step against mmengine's, gradient routing, the EMA
encoder, and CPU/CUDA agreement."""

from __future__ import annotations

# The ViT of the label-mixing tests: 16 x 16 grey images in 4 x 4 patches, 2 blocks of width 32.
TINY_VIT = {
    "type": "ViTBackbone",
    "model_name": "vit_tiny_patch16_224",
    "img_size": 16,
    "patch_size": 4,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "in_chans": 1,
}


def train_step_both_ways(model, data: dict, seed: int = 3, make_wrapper=None) -> tuple:
    """Run one training step of ``model`` the engine's way (``train_step_in_stages``, one
    backward per loss stage) and one of mmengine's default ``BaseModel.train_step`` (all
    losses, one backward) on a copy of it, from the same state and seed. Return
    ``[(grads, log_vars, wrapper, model), ...]`` for (staged, single), ``grads`` the
    parameter gradients seen by the optimizer step."""
    import copy

    import torch
    from mmengine.model import BaseModel
    from mmengine.optim import OptimWrapper

    from mixbench.engine.staged import train_step_in_stages

    make_wrapper = make_wrapper or (lambda params: OptimWrapper(torch.optim.SGD(params, lr=0.1)))
    runs = []
    for clf, step in ((model, train_step_in_stages), (copy.deepcopy(model), BaseModel.train_step)):
        wrapper = make_wrapper([p for p in clf.parameters() if p.requires_grad])
        grads: dict = {}
        optimizer_step = wrapper.step

        def record(clf=clf, grads=grads, optimizer_step=optimizer_step, **kwargs):
            grads.update({n: p.grad.clone() for n, p in clf.named_parameters() if p.grad is not None})
            optimizer_step(**kwargs)

        wrapper.step = record
        torch.manual_seed(seed)
        log_vars = step(clf, data, wrapper)
        runs.append((grads, log_vars, wrapper, clf))
    return runs


def assert_same_training_state(a: dict, b: dict, parts) -> None:
    """Two checkpoints hold bit-identical weights for every key starting with one of
    ``parts`` (each present) and identical SGD momentum buffers."""
    import torch

    for part in parts:
        keys = [k for k in a["state_dict"] if k.startswith(part)]
        assert keys, part
        for k in keys:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(
        torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa
    )


def assert_mix_block_gradient_routing(
    clf,
    losses: dict,
    classifier_losses=("loss_mix", "loss_one"),
    mix_block_losses=("loss_mix_block", "loss_mask"),
) -> None:
    """AutoMix-style gradient routing on one step's ``losses`` (``clf.loss``, with exactly
    the keys ``classifier_losses`` and ``mix_block_losses``): the classifier's losses reach
    the classifier and not the Mix Block; the Mix Block's losses reach every Mix Block
    parameter and neither the classifier nor the EMA encoder."""
    assert set(losses) == {*classifier_losses, *mix_block_losses}
    classifier = [
        *clf.backbone.parameters(),
        *clf.neck.parameters(),
        *clf.head.parameters(),
        *clf.head_one.parameters(),
    ]
    sum(losses[k] for k in classifier_losses).backward(retain_graph=True)
    assert all(p.grad is None for p in clf.mix_block.parameters())
    assert all(p.grad is not None for p in classifier)
    clf.zero_grad(set_to_none=True)
    sum(losses[k] for k in mix_block_losses).backward()
    assert all(p.grad is None for p in classifier)
    assert all(p.grad is None for p in clf.ema_pairs()[0])
    for name, p in clf.mix_block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def assert_ema_encoder_follows_momentum(clf, losses, update, atol: float = 1e-7) -> None:
    """For AutoMix-style classifiers: the EMA encoder (``clf.ema_pairs()``) starts as a
    frozen copy of the online one and gets no gradient from ``losses()`` (a dict of loss
    tensors); after the online weights move, ``update()`` (returning the momentum ``m`` it
    used) leaves ``k = m * k + (1 - m) * q``."""
    import torch

    k_params, q_params = clf.ema_pairs()
    assert all(not p.requires_grad for p in k_params)
    assert all(torch.equal(k, q) for k, q in zip(k_params, q_params))  # starts as a copy
    sum(losses().values()).backward()
    assert all(p.grad is None for p in k_params)
    with torch.no_grad():
        for p in q_params:
            p.add_(torch.randn_like(p))
    k_before, q_now = [p.clone() for p in k_params], [p.clone() for p in q_params]
    m = update()
    for k, k0, q in zip(k_params, k_before, q_now):
        assert torch.allclose(k, m * k0 + (1 - m) * q, atol=atol)
    assert any(not torch.equal(k, k0) for k, k0 in zip(k_params, k_before))


def scaled_pool_neck() -> dict:
    """Config of a neck with parameters (global average pooling times a learnt per-channel
    scale, registered here as ``TestScaledPool``): the one neck mixbench ships has none, and
    a neck with parameters must be part of the EMA classifier like the encoder and head."""
    import torch
    from torch import nn

    from mixbench.registry import MODELS

    if "TestScaledPool" not in MODELS.module_dict:

        @MODELS.register_module(name="TestScaledPool")
        class ScaledPool(nn.Module):
            def __init__(self, channels: int = 32):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(channels))

            def forward(self, x):
                return x.mean((2, 3)) * self.scale

    return {"type": "TestScaledPool"}


def assert_neck_is_part_of_the_ema_classifier(make_classifier, x, y, **routing) -> None:
    """With a neck that has parameters (``make_classifier(neck=...)``): its EMA copy starts
    equal after ``init_weights``, is in ``ema_pairs`` (so the momentum update moves it) and
    gets no gradient, while the online neck gets the classifier's gradient only
    (:func:`assert_mix_block_gradient_routing` with ``routing``)."""
    import torch

    clf = make_classifier(neck=scaled_pool_neck())
    with torch.no_grad():
        clf.neck.scale.uniform_(0.5, 1.5)
    clf.init_weights()
    assert torch.equal(clf.neck_k.scale, clf.neck.scale) and not clf.neck_k.scale.requires_grad
    k_params, q_params = clf.ema_pairs()
    assert any(k is clf.neck_k.scale for k in k_params)
    assert any(q is clf.neck.scale for q in q_params)
    torch.manual_seed(2)
    sum(clf.loss(x, y).values()).backward()
    assert clf.neck_k.scale.grad is None
    assert clf.neck.scale.grad is not None and clf.neck.scale.grad.abs().sum() > 0
    clf.zero_grad(set_to_none=True)
    assert_mix_block_gradient_routing(clf, clf.loss(x, y), **routing)


def assert_cuda_loss_equals_cpu(clf, x, y, atol: float = 1e-5, seed: int = 1):
    """A classifier with its own CPU ``generator`` (MixPro, TokenMix): the loss of (x, y) from
    the same seed is the same on CPU and CUDA (eval mode, so dropout cannot differ) and finite
    under float16 autocast in training mode. Returns the classifier, now on CUDA."""
    import torch

    clf.eval()
    clf.generator = torch.Generator().manual_seed(seed)
    loss = clf.loss(x, y)["loss"]
    clf = clf.cuda()
    clf.generator = torch.Generator().manual_seed(seed)
    loss_cuda = clf.loss(x.cuda(), y.cuda())["loss"]
    assert torch.allclose(loss_cuda.cpu(), loss, atol=atol)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = clf.train().loss(x.cuda(), y.cuda())["loss"]
    assert torch.isfinite(loss)
    return clf


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
