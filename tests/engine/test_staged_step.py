"""The engine's training step of a model that declares its loss stages
(mixbench.engine.staged): a toy model with two stages gets the gradients and the update of
one backward done by hand, under gradient accumulation, clipping and bf16 autocast (AMP's
loss scaling on CUDA); the runner wraps such a model and installs its schedule hook."""

import copy

import pytest
import torch
import torch.nn.functional as F
from mbtest.repo import REPO
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.optim import OptimWrapper
from torch import nn

from mixbench.engine.optim import AutocastOptimWrapper
from mixbench.engine.staged import StagedStep, train_step_in_stages
from mixbench.models.stages import StagedLosses


class TwoStages(StagedLosses, BaseModel):
    """A shared trunk and two heads; stage 1 trains trunk + head_a, stage 2 trunk + head_b.
    It records, when stage 2 is built, whether stage 1 was already backpropagated, and
    whether autocast was on while each stage was built."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(6, 8)
        self.head_a = nn.Linear(8, 3)
        self.head_b = nn.Linear(8, 1)
        self.seen = []

    def forward(self, inputs, data_samples=None, mode="loss"):
        return self.loss(inputs, data_samples)

    def loss_stages(self, inputs, labels):
        feats = torch.tanh(self.trunk(inputs))
        self.seen.append(("a", torch.is_autocast_enabled("cpu")))
        yield {"loss_a": F.cross_entropy(self.head_a(feats).float(), labels)}
        self.seen.append(("b", torch.is_autocast_enabled("cpu"), self.trunk.weight.grad is not None))
        feats = torch.tanh(self.trunk(inputs * 2))
        yield {"loss_b": 0.5 * self.head_b(feats).float().pow(2).mean()}


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randn(5, 6, generator=g), "data_samples": torch.arange(5) % 3}


def by_hand(model, batches, scale=1.0) -> dict:
    """Gradients of ``scale * sum of every stage's losses`` over ``batches``, one backward."""
    model = copy.deepcopy(model)
    for d in batches:
        (scale * sum(model.loss(d["inputs"], d["data_samples"]).values())).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def sgd(model, **kwargs):
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5), **kwargs)


def test_two_stages_give_the_gradients_and_update_of_one_backward():
    model = TwoStages()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = by_hand(model, [data()])
    wrapper = sgd(model)
    seen = {}
    step = wrapper.step
    wrapper.step = lambda: (seen.update({n: p.grad.clone() for n, p in model.named_parameters()}), step())
    log = train_step_in_stages(model, data(), wrapper)
    assert list(log) == ["loss", "loss_a", "loss_b"]
    assert torch.isclose(log["loss"], log["loss_a"] + log["loss_b"])
    for name, g in grads.items():
        assert torch.allclose(seen[name], g, rtol=1e-6, atol=1e-7), name
        assert torch.allclose(dict(model.named_parameters())[name], start[name] - 0.5 * g, atol=1e-6), name
    # stage 1 was backpropagated (its graph freed) before stage 2 was built
    assert model.seen[1] == ("b", False, True)
    assert all(p.grad is None for p in model.parameters())  # stepped, zeroed
    assert wrapper.inner_count == 1


def test_gradient_accumulation_counts_iterations_not_stages():
    model = TwoStages()
    start = copy.deepcopy(model)
    grads = by_hand(model, [data(0), data(1)], scale=0.5)  # mean over the 2 iterations
    wrapper = sgd(model, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 4)
    train_step_in_stages(model, data(0), wrapper)
    assert wrapper.inner_count == 1
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters()))  # no step yet
    for name, p in model.named_parameters():  # half of the first batch's
        assert torch.allclose(p.grad, by_hand(start, [data(0)], 0.5)[name], atol=1e-7), name
    train_step_in_stages(model, data(1), wrapper)
    assert wrapper.inner_count == 2
    for (name, p), q in zip(model.named_parameters(), start.parameters()):
        assert torch.allclose(p, q - 0.5 * grads[name], atol=1e-6), name


def test_clipping_applies_to_the_complete_gradients():
    model = TwoStages()
    start = copy.deepcopy(model)
    grads = by_hand(model, [data()])
    norm = torch.cat([g.flatten() for g in grads.values()]).norm()
    max_norm = float(norm) / 4  # the clip matters
    train_step_in_stages(model, data(), sgd(model, clip_grad={"max_norm": max_norm}))
    for (name, p), q in zip(model.named_parameters(), start.parameters()):
        clipped = grads[name] * max_norm / (norm + 1e-6)  # torch's clip_grad_norm_
        assert torch.allclose(p, q - 0.5 * clipped, atol=1e-6), name


def test_every_stage_is_built_under_the_wrappers_bf16_autocast():
    model = TwoStages()
    reference = copy.deepcopy(model)
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    seen = {}
    step = wrapper.step
    wrapper.step = lambda: (seen.update({n: p.grad.clone() for n, p in model.named_parameters()}), step())
    train_step_in_stages(model, data(), wrapper)
    assert [s[1] for s in model.seen] == [True, True]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = sum(reference.loss(data()["inputs"], data()["data_samples"]).values())
    total.backward()
    for name, p in reference.named_parameters():  # bf16 rounding
        assert torch.allclose(seen[name], p.grad, rtol=2e-2, atol=2e-3), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_loss_scaling_and_autocast_on_cuda():
    from mmengine.optim import AmpOptimWrapper

    cuda = {k: v.cuda() for k, v in data().items()}
    model = TwoStages().cuda()
    plain = by_hand(model, [cuda])
    runs = []
    for clf, step in ((model, train_step_in_stages), (copy.deepcopy(model), BaseModel.train_step)):
        wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(clf.parameters(), lr=0.5), loss_scale=1024.0)
        seen = {}
        optimizer_step = wrapper.step

        def record(clf=clf, seen=seen, optimizer_step=optimizer_step):
            seen.update({n: p.grad.clone() for n, p in clf.named_parameters()})
            optimizer_step()

        wrapper.step = record
        step(clf, cuda, wrapper)
        runs.append((seen, clf))
    (staged, model), (one, reference) = runs
    for name in plain:
        assert torch.allclose(staged[name], one[name], rtol=5e-3, atol=5e-2), name  # fp16 rounding
        assert torch.allclose(staged[name], 1024 * plain[name], rtol=2e-2, atol=2.0), name  # scaled
    for p, q in zip(model.parameters(), reference.parameters()):  # unscaled update
        assert torch.allclose(p, q, atol=1e-3)


def test_the_step_and_its_wrapper_refuse_a_model_without_stages():
    class OneLoss(BaseModel):
        def forward(self, *args, **kwargs):
            return {}

    with pytest.raises(TypeError, match="declares its loss stages.*got OneLoss"):
        train_step_in_stages(
            OneLoss(), data(), OptimWrapper(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1))
        )
    with pytest.raises(TypeError, match="StagedStep wraps a model that declares its loss stages"):
        StagedStep(OneLoss())


def test_staged_step_wrapper_trains_in_stages_and_validates_through_the_model():
    model = TwoStages()
    wrapped = StagedStep(model)
    assert is_model_wrapper(wrapped)
    reference = copy.deepcopy(model)
    log = wrapped.train_step(data(), sgd(model))
    assert torch.equal(log["loss"], train_step_in_stages(reference, data(), sgd(reference))["loss"])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))


def test_runner_wraps_a_staged_model_and_installs_its_schedule_hook(tmp_path):
    from mbtest.training import digits_config

    from mixbench.config import load_config
    from mixbench.engine import MethodScheduleHook, build_runner

    tiny = {"type": "ResNetCIFAR", "depth": 8, "width": 8, "in_channels": 1}
    overrides = {
        "meta": {"backbone": "resnet8_w8"},
        "model": {"backbone": tiny},
        "method": {"classifier": {"mask_stage": 2}},
    }
    config = digits_config(tmp_path, "automix", overrides)
    cfg = load_config(config)
    runner = build_runner(cfg, str(tmp_path / "automix"))
    assert isinstance(runner.model, StagedStep) and type(runner.model.module).__name__ == "AutoMixClassifier"
    assert sum(isinstance(h, MethodScheduleHook) for h in runner.hooks) == 1
    log = "".join(p.read_text() for p in (tmp_path / "automix").rglob("*.log"))
    assert "environment: python" in log and "System environment" not in log  # compat: log_environment
    listed = {**cfg, "custom_hooks": [{"type": "MethodScheduleHook"}]}
    with pytest.raises(ValueError, match="lists MethodScheduleHook, which the runner installs itself"):
        build_runner(listed, str(tmp_path / "listed"))
    plain = load_config(REPO / "configs/digits/resnet8_mixup.yaml")
    runner = build_runner(plain, str(tmp_path / "mixup"))
    assert not is_model_wrapper(runner.model)
    assert not any(isinstance(h, MethodScheduleHook) for h in runner.hooks)
