import pytest
import torch
from mbtest.mixers import (
    LAM_MODES_PAIRINGS,
    TinyClassifier,
    check_batch_size_one,
    check_dtypes_and_formats,
    check_output,
    check_stage_hook_cpu_cuda_equal,
    make_batch,
    requires_cuda,
    seeded,
)
from scipy import stats

from mixbench.mixers import ManifoldMix, Mixup


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return TinyClassifier()


def batch(b=8, hw=16, dtype=torch.float32):
    return make_batch(b=b, h=hw, w=hw, dtype=dtype)


def record_stages(hook):
    """Wrap a stage hook: remember (k, input, output) of every call."""
    calls = []

    def recording(k, feat):
        out = hook(k, feat)
        calls.append((k, feat.detach().clone(), out.detach().clone(), out is feat))
        return out

    return recording, calls


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_mixes_at_the_drawn_stage_only(stage):
    model = tiny_classifier()
    x, y = batch()
    out = ManifoldMix(stages=[stage], generator=seeded(1))(x, y, model=model)
    assert out.stage_hook.stage == stage
    assert torch.equal(out.inputs, x)
    hook, calls = record_stages(out.stage_hook)
    model.logits(out.inputs, stage_hook=hook)
    assert [k for k, *_ in calls] == [0, 1, 2, 3]
    lam = out.lam.view(-1, 1, 1, 1)
    for k, feat_in, feat_out, passed_through in calls:
        if k == stage:
            expected = lam * feat_in + (1 - lam) * feat_in[out.index]
            assert torch.allclose(feat_out, expected, atol=1e-6)
            assert not torch.allclose(feat_out, feat_in)
        else:
            assert passed_through


def test_stage_is_drawn_uniformly_from_stages():
    mixer = ManifoldMix(stages=[0, 1, 2], generator=seeded(0))
    model = tiny_classifier()
    x, y = batch(b=4)
    counts = torch.zeros(3)
    for _ in range(300):
        counts[mixer(x, y, model=model).stage_hook.stage] += 1
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3


def test_default_stages_are_the_published_ones():
    mixer = ManifoldMix()
    assert mixer.alpha == 2.0 and mixer.stages == (0, 1, 2)


def test_lam_index_and_labels_are_those_of_mixup():
    x, y = batch()
    model = tiny_classifier()
    out = ManifoldMix(alpha=2.0, stages=[0], generator=seeded(3))(x, y, model=model)
    ref = Mixup(alpha=2.0, generator=seeded(3))(x, y)
    assert torch.equal(out.lam, ref.lam) and torch.equal(out.index, ref.index)
    assert torch.equal(out.y_a, y) and torch.equal(out.y_b, y[out.index])
    assert out.lam.dtype == torch.float32 and out.lam.shape == (8,)
    assert ((0 <= out.lam) & (out.lam <= 1)).all()
    # at stage 0 the hook reproduces Mixup's mixed images
    assert torch.equal(out.stage_hook(0, x), ref.inputs)


def test_gradients_flow_to_both_samples_of_a_pair():
    model = tiny_classifier().eval()  # eval: no batch-statistics coupling between samples
    x, y = batch()
    x.requires_grad_(True)
    mixer = ManifoldMix(stages=[2], generator=seeded(5))
    out = mixer(x, y, model=model)
    i = int((out.index != torch.arange(8)).nonzero()[0])
    j = int(out.index[i])
    model.logits(out.inputs, stage_hook=out.stage_hook)[i].sum().backward()
    grad_norm = x.grad.flatten(1).norm(dim=1)
    assert grad_norm[i] > 0 and grad_norm[j] > 0
    others = [k for k in range(8) if k not in (i, j)]
    assert torch.all(grad_norm[others] == 0)


def test_reproducible_from_a_seed():
    model = tiny_classifier().eval()
    x, y = batch()
    outs = [ManifoldMix(generator=seeded(7))(x, y, model=model) for _ in range(2)]
    assert outs[0].stage_hook.stage == outs[1].stage_hook.stage
    assert torch.equal(outs[0].lam, outs[1].lam) and torch.equal(outs[0].index, outs[1].index)
    logits = [model.logits(o.inputs, stage_hook=o.stage_hook) for o in outs]
    assert torch.equal(logits[0], logits[1])


def test_elementwise_lam_follows_beta_alpha_alpha():
    mixer = ManifoldMix(alpha=2.0, lam_mode="elem", generator=seeded(0))
    x, y = batch(b=500, hw=4)
    lam = mixer(x, y, model=tiny_classifier()).lam.double().numpy()
    assert stats.kstest(lam, stats.beta(2.0, 2.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtypes_are_preserved(dtype):
    model = tiny_classifier().to(dtype)
    x, y = batch(dtype=dtype)
    out = ManifoldMix(stages=[1], generator=seeded(0))(x, y, model=model)
    logits = model.logits(out.inputs, stage_hook=out.stage_hook)
    assert out.inputs.dtype == dtype and logits.dtype == dtype
    assert torch.isfinite(logits.float()).all()
    feat = torch.randn(8, 4, 8, 8).to(dtype)
    assert out.stage_hook(1, feat).dtype == dtype


@pytest.mark.parametrize("lam_mode,pairing", LAM_MODES_PAIRINGS)
def test_output_contract(lam_mode, pairing):
    x, y = batch()
    mixer = ManifoldMix(lam_mode=lam_mode, pairing=pairing, generator=seeded(0))
    out = check_output(mixer, x, y, model=tiny_classifier(), mask_method=False)
    assert out.stage_hook is not None and torch.equal(out.inputs, x)
    if lam_mode == "pair":
        assert torch.equal(out.lam, out.lam[out.index])


def test_shared_checks_batch_of_one_dtypes_and_formats():
    check_batch_size_one(ManifoldMix(), model=tiny_classifier())
    check_dtypes_and_formats(ManifoldMix(), model=tiny_classifier())
    x, y = batch()
    out = ManifoldMix(stages=[1], generator=seeded(0))(x, y, model=tiny_classifier())
    feat = torch.randn(8, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    assert out.stage_hook(1, feat).is_contiguous(memory_format=torch.channels_last)


def test_clear_errors():
    x, y = batch()
    with pytest.raises(ValueError, match="needs the model"):
        ManifoldMix()(x, y)
    with pytest.raises(ValueError, match="beyond the backbone's 3 stages"):
        ManifoldMix(stages=[0, 4])(x, y, model=tiny_classifier())
    with pytest.raises(TypeError, match="backbone"):
        ManifoldMix()(x, y, model=torch.nn.Linear(3, 3))
    for bad in ([], [0, 0], [-1], [1.5], "012"):
        with pytest.raises(ValueError, match="stages must be"):
            ManifoldMix(stages=bad)
    with pytest.raises(ValueError, match="alpha"):
        ManifoldMix(alpha=-1)


def real_classifier(mixer: dict):
    """mixbench's own MixupClassifier with a width-4 CIFAR ResNet-18 (4 stages)."""
    from mixbench.models.classifiers.mixup_classifier import MixupClassifier

    torch.manual_seed(0)
    return MixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 18, "width": 4},
        head={"type": "LinearHead", "num_classes": 5},
        mixer=mixer,
    )


@pytest.mark.parametrize("stage", [0, 1, 2, 3, 4])
def test_real_resnet_mixes_at_the_drawn_stage(stage):
    model = real_classifier({"type": "ManifoldMix", "stages": [stage]})
    x, y = batch(b=4)
    out = model.mixer(x, y, model=model)
    hook, calls = record_stages(out.stage_hook)
    model.logits(out.inputs, stage_hook=hook)
    assert [k for k, *_ in calls] == [0, 1, 2, 3, 4]
    assert [k for k, _, _, passed in calls if not passed] == [stage]
    loss = model.loss(x, y)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.stem[0].weight.grad.abs().sum() > 0


@requires_cuda
def test_cpu_and_cuda_agree():
    x, y = batch()
    check_stage_hook_cpu_cuda_equal(
        lambda: ManifoldMix(lam_mode="elem", generator=seeded(3)),
        x,
        y,
        torch.randn(8, 4, 8, 8, generator=seeded(1)),
        tiny_classifier,
    )
