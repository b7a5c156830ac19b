"""Shared property checks for every mixer test (tests/mixers/test_<method>.py).

Typical use in a test file::

    from mbtest.mixers import make_batch, check_output, check_mask_identity, ...

    def test_properties():
        x, y = make_batch()
        out = check_output(CutMix(alpha=1.0, generator=seeded(0)), x, y)
        check_mask_identity(out, x)

Every check raises ``AssertionError`` with a message saying what differed. Nothing here
skips: only :data:`requires_cuda` marks a test as needing a GPU.

The contract checked (docs/mixers.md, mixbench/mixers/base.py):
* ``inputs`` keeps shape, dtype, device and memory format of ``x``;
* ``y_a``, ``y_b``, ``index`` are int64 (B,); ``index`` is a permutation; ``y_b == y_a[index]``
  for pairwise methods;
* ``lam`` is float32 (B,) in [0, 1]; the label target of each sample sums to 1;
* mask methods: ``mask`` is float32 (B, 1, H, W) in [0, 1],
  ``inputs == mask*x + (1-mask)*x[index]`` exactly (same dtype arithmetic) and, with
  ``correct_lam``, ``lam == mask.mean((1, 2, 3))`` exactly;
* same generator seed -> identical output; lambda ~ Beta(a, b) by a KS test (fixed seed);
* CPU and CUDA give the same output for the same generator state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from scipy import stats
from torch import Tensor, nn

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CPU/CUDA equality needs a CUDA device"
)


def seeded(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator with ``seed``."""
    return torch.Generator().manual_seed(seed)


def make_batch(
    b: int = 6,
    c: int = 3,
    h: int = 16,
    w: int = 16,
    num_classes: int = 5,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device="cpu",
    channels_last: bool = False,
) -> tuple[Tensor, Tensor]:
    """A random normalised image batch and int64 labels."""
    g = seeded(seed)
    x = torch.randn(b, c, h, w, generator=g).to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (b,), generator=g).to(device)
    return x, y


class TinyBackbone(nn.Module):
    """A 3-stage conv net following the mixers' model contract.

    ``forward(x, stage_hook)`` calls ``x = stage_hook(0, x)`` before the stem and
    ``feat = stage_hook(k, feat)`` after each stage k = 1..3.
    """

    def __init__(self, in_channels: int = 3, widths=(4, 8, 8)):
        super().__init__()
        self.out_channels = list(widths)
        self.num_stages = len(widths)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages, prev = [], widths[0]
        for i, wd in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    nn.Conv2d(prev, wd, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(wd),
                    nn.ReLU(),
                )
            )
            prev = wd
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor, stage_hook=None) -> Tensor:
        if stage_hook is not None:
            x = stage_hook(0, x)
        feat = self.stem(x)
        for k, stage in enumerate(self.stages, start=1):
            feat = stage(feat)
            if stage_hook is not None:
                feat = stage_hook(k, feat)
        return feat


class TinyClassifier(nn.Module):
    """Stand-in classifier with the contract mixers rely on: ``backbone(x, stage_hook)``,
    ``logits(x, stage_hook)``, ``num_classes``, ``training``."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3, widths=(4, 8, 8)):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = TinyBackbone(in_channels, widths)
        self.head = nn.Linear(widths[-1], num_classes)

    def logits(self, x: Tensor, stage_hook=None) -> Tensor:
        return self.head(self.backbone(x, stage_hook).mean((2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)


def _assert_same_format(a: Tensor, like: Tensor, what: str) -> None:
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        assert a.is_contiguous(memory_format=torch.channels_last), (
            f"{what}: channels_last input gave an output that is not channels_last"
        )
    elif like.is_contiguous():
        assert a.is_contiguous(), f"{what}: a contiguous input gave a non-contiguous output {a.stride()}"


def check_output(
    mixer, x: Tensor, y: Tensor, model=None, pairwise: bool = True, mask_method: bool | None = None
):
    """Run ``mixer(x, y, model=model)`` and check the MixOutput contract; return the output.

    ``pairwise``: check ``y_b == y_a[index]``. ``mask_method``: True -> a mask must be
    returned and be a float32 (B, 1, H, W) in [0, 1]; False -> no mask; None -> either.
    """
    x_before = x.clone()
    out = mixer(x, y, model=model) if model is not None else mixer(x, y)
    b, _, h, w = x.shape
    assert torch.equal(x, x_before), f"{type(mixer).__name__} modified its input in place"
    assert out.inputs.shape == x.shape, f"inputs shape {tuple(out.inputs.shape)} != {tuple(x.shape)}"
    assert out.inputs.dtype == x.dtype, f"inputs dtype {out.inputs.dtype} != {x.dtype}"
    assert out.inputs.device == x.device, f"inputs device {out.inputs.device} != {x.device}"
    _assert_same_format(out.inputs, x, type(mixer).__name__)
    for name in ("y_a", "y_b", "index"):
        t = getattr(out, name)
        assert t.dtype == torch.int64 and t.shape == (b,), (
            f"{name}: expected int64 ({b},), got {t.dtype} {tuple(t.shape)}"
        )
        assert t.device == x.device, f"{name} on {t.device}, inputs on {x.device}"
    assert torch.equal(out.y_a, y), "y_a must be the input labels"
    assert torch.equal(out.index.sort().values, torch.arange(b, device=x.device)), (
        f"index is not a permutation: {out.index.tolist()}"
    )
    if pairwise:
        assert torch.equal(out.y_b, y[out.index]), "y_b != y_a[index]"
    assert out.lam.dtype == torch.float32 and out.lam.shape == (b,), (
        f"lam: expected float32 ({b},), got {out.lam.dtype} {tuple(out.lam.shape)}"
    )
    assert out.lam.device == x.device, f"lam on {out.lam.device}, inputs on {x.device}"
    assert bool(((out.lam >= 0) & (out.lam <= 1)).all()), f"lam outside [0, 1]: {out.lam.tolist()}"
    num_classes = int(y.max()) + 1 if out.soft_targets is None else out.soft_targets.shape[1]
    target = out.target(num_classes)
    torch.testing.assert_close(
        target.sum(1),
        torch.ones(b, device=x.device, dtype=target.dtype),
        msg="label weights of a sample do not sum to 1",
    )
    assert bool((target >= 0).all()), "negative label weight"
    if mask_method is True:
        assert out.mask is not None, f"{type(mixer).__name__} returned no mask"
    if mask_method is False:
        assert out.mask is None, f"{type(mixer).__name__} returned a mask but is not a mask method"
    if out.mask is not None:
        assert out.mask.shape == (b, 1, h, w), f"mask shape {tuple(out.mask.shape)} != {(b, 1, h, w)}"
        assert out.mask.dtype == torch.float32, f"mask dtype {out.mask.dtype} != float32"
        assert out.mask.device == x.device, f"mask on {out.mask.device}, inputs on {x.device}"
        assert bool(((out.mask >= 0) & (out.mask <= 1)).all()), "mask values outside [0, 1]"
    return out


def check_mask_identity(out, x: Tensor, second: Tensor | None = None, lam_is_mask_mean: bool = True) -> None:
    """``inputs == mask*x + (1-mask)*second`` exactly (``second`` defaults to ``x[index]``),
    computed in ``x``'s dtype; and ``lam == mask.mean((1,2,3))`` exactly when asked."""
    assert out.mask is not None, "no mask to check"
    if second is None:
        second = x[out.index]
    m = out.mask.to(x.dtype)
    expected = m * x + (1 - m) * second
    diff = (out.inputs.float() - expected.float()).abs().max().item()
    assert torch.equal(out.inputs, expected), (
        f"inputs != mask*x + (1-mask)*x[index] (max abs difference {diff:.3g})"
    )
    if lam_is_mask_mean:
        assert torch.equal(out.lam, out.mask.mean((1, 2, 3))), (
            f"lam {out.lam.tolist()} != mask.mean {out.mask.mean((1, 2, 3)).tolist()}"
        )


def check_lerp_identity(out, x: Tensor) -> None:
    """For interpolating methods: ``inputs == lam*x + (1-lam)*x[index]`` (same formula as
    timm/torchvision: lambda and 1 - lambda cast from float64)."""
    lam64 = out.lam.double()
    expected = x * lam64.to(x.dtype).view(-1, 1, 1, 1) + x[out.index] * (1 - lam64).to(x.dtype).view(
        -1, 1, 1, 1
    )
    torch.testing.assert_close(out.inputs, expected, msg="inputs != lam*x + (1-lam)*x[index]")


def assert_outputs_equal(a, b, what: str = "outputs") -> None:
    """Two MixOutputs hold identical tensors (moved to CPU)."""
    for name in ("inputs", "y_a", "y_b", "lam", "index", "mask", "soft_targets"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert (ta is None) == (tb is None), f"{what}: {name} is None in one output only"
        if ta is not None:
            ta, tb = ta.cpu(), tb.cpu()
            assert torch.equal(ta, tb), (
                f"{what}: {name} differs (max abs diff {(ta.double() - tb.double()).abs().max().item():.3g})"
            )


def check_reproducible(mixer, x: Tensor, y: Tensor, model=None, seed: int = 0) -> None:
    """Same generator seed -> identical output; a different seed -> a different output."""
    outs = []
    for s in (seed, seed, seed + 1):
        mixer.generator = seeded(s)
        outs.append(mixer(x, y, model=model) if model is not None else mixer(x, y))
    assert_outputs_equal(outs[0], outs[1], "two runs from the same seed")
    assert not torch.equal(outs[0].inputs, outs[2].inputs), (
        "two different seeds gave the same mixed batch (is the generator used?)"
    )


def collect_lams(
    mixer, n_calls: int = 400, x: Tensor | None = None, y: Tensor | None = None, seed: int = 0
) -> Tensor:
    """Lambdas over ``n_calls`` calls: lam[0] per call in ``batch`` mode, all of them else."""
    if x is None:
        x, y = make_batch(b=4, c=1, h=8, w=8)
    mixer.generator = seeded(seed)
    lams = []
    for _ in range(n_calls):
        lam = mixer(x, y).lam
        lams.append(lam[:1] if getattr(mixer, "lam_mode", "batch") == "batch" else lam)
    return torch.cat(lams).double()


def check_beta_distribution(
    lams: Tensor, a: float, b: float | None = None, min_pvalue: float = 0.01
) -> float:
    """Kolmogorov-Smirnov test of ``lams`` against Beta(a, b) (b defaults to a); the caller
    fixes the seed, so the outcome is deterministic. Returns the p-value."""
    b = a if b is None else b
    result = stats.kstest(lams.cpu().numpy(), "beta", args=(a, b))
    assert result.pvalue > min_pvalue, (
        f"lambda does not follow Beta({a}, {b}): KS statistic {result.statistic:.3f}, "
        f"p = {result.pvalue:.2g} over {lams.numel()} draws"
    )
    return float(result.pvalue)


def check_batch_size_one(mixer, model=None) -> None:
    """B = 1: returned unmixed, lam = 1, y_b = y_a, index = [0], no mask."""
    x, y = make_batch(b=1)
    out = mixer(x, y, model=model) if model is not None else mixer(x, y)
    assert torch.equal(out.inputs, x), "batch of 1 must be returned unmixed"
    assert out.lam.tolist() == [1.0] and out.index.tolist() == [0] and torch.equal(out.y_b, y)
    assert out.mask is None


ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The (lam_mode, pairing) combinations the common contract is checked in.
LAM_MODES_PAIRINGS = (
    ("batch", "random"),
    ("elem", "random"),
    ("pair", "reverse"),
    ("pair", "random"),
    ("batch", "roll"),
)


def check_dtypes_and_formats(
    mixer, mask_identity: bool = True, model=None, dtypes=ALL_DTYPES, **batch
) -> None:
    """float32/float16/bfloat16 and channels_last batches keep dtype and format, and (for
    mask methods) the mask identity holds in that dtype. A ``model`` is cast to each dtype."""
    for dtype in dtypes:
        if model is not None:
            model = model.to(dtype)
        for channels_last in (False, True):
            x, y = make_batch(dtype=dtype, channels_last=channels_last, **batch)
            mixer.generator = seeded(1)
            out = check_output(mixer, x, y, model=model)
            if mask_identity and out.mask is not None:
                check_mask_identity(out, x, lam_is_mask_mean=getattr(mixer, "correct_lam", True))


def check_cpu_cuda_equal(
    mixer, x: Tensor, y: Tensor, model_factory: Callable | None = None, seed: int = 0, exact: bool = True
) -> None:
    """Same generator state on CPU and CUDA -> the same output (call under requires_cuda).

    ``model_factory`` builds a fresh model (seeded inside) for model-based mixers; it is
    built twice and moved to each device. ``exact=False`` allows float rounding differences
    (e.g. model activations computed by different kernels). Even with ``exact``, ``lam`` may
    differ in the last bit: CUDA's mean reduction may divide differently from the CPU's.
    """
    outs = []
    for device in ("cpu", "cuda"):
        model = model_factory().to(device) if model_factory is not None else None
        mixer.generator = seeded(seed)
        xd, yd = x.to(device), y.to(device)
        outs.append(mixer(xd, yd, model=model) if model is not None else mixer(xd, yd))
    if exact:
        torch.testing.assert_close(
            outs[0].lam,
            outs[1].lam.cpu(),
            rtol=1e-6,
            atol=1e-7,
            msg="CPU vs CUDA: lam differs beyond the last bit",
        )
        assert_outputs_equal(outs[0], dataclasses.replace(outs[1], lam=outs[0].lam), "CPU vs CUDA")
    else:
        for name in ("inputs", "lam", "mask", "soft_targets"):
            a, b = getattr(outs[0], name), getattr(outs[1], name)
            if a is not None:
                torch.testing.assert_close(a, b.cpu(), msg=f"CPU vs CUDA: {name} differs")
        assert torch.equal(outs[0].index, outs[1].index.cpu())


def check_stage_hook_cpu_cuda_equal(
    make_mixer: Callable[[], object], x: Tensor, y: Tensor, feat: Tensor, model_factory: Callable, **close
) -> None:
    """For mixers that mix at a hidden stage (ManifoldMix, AlignMix): the same seed on CPU
    and CUDA draws the same stage, lambda and pairing, and the returned stage hook mixes a
    given feature map ``feat`` to the same result (``close``: tolerances of assert_close).
    Call under requires_cuda."""
    outs = []
    for device in ("cpu", "cuda"):
        out = make_mixer()(x.to(device), y.to(device), model=model_factory().to(device))
        assert out.lam.device.type == out.index.device.type == device
        mixed = out.stage_hook(out.stage_hook.stage, feat.to(device))
        assert mixed.device.type == device
        outs.append((out.stage_hook.stage, out.lam.cpu(), out.index.cpu(), mixed.cpu()))
    assert outs[0][0] == outs[1][0], "CPU vs CUDA: different mixing stage"
    assert torch.equal(outs[0][1], outs[1][1]) and torch.equal(outs[0][2], outs[1][2])
    torch.testing.assert_close(outs[0][3], outs[1][3], **close)


def check_standard(
    make_mixer: Callable[..., object],
    mask_method: bool,
    alpha: float | None = None,
    model_factory: Callable | None = None,
    pairwise: bool = True,
    lam_is_mask_mean: bool = True,
    dtypes=ALL_DTYPES,
) -> None:
    """The whole common contract in one call, for a mixer built by ``make_mixer(**kw)``
    (e.g. ``functools.partial(CutMix, alpha=1.0)``; it must accept ``alpha``, ``lam_mode``,
    ``pairing``, ``generator`` and, for mask methods, ``correct_lam`` as keywords):
    output contract in every lam_mode/pairing, mask identity, reproducibility, batch size 1,
    dtypes/channels_last, CPU == CUDA when a GPU is present; plus the Beta(alpha, alpha) KS test on lambda when ``alpha`` is
    given (with ``correct_lam=False`` for mask methods, so lam is the raw draw)."""
    model = model_factory() if model_factory is not None else None
    x, y = make_batch()
    for lam_mode, pairing in LAM_MODES_PAIRINGS:
        mixer = make_mixer(lam_mode=lam_mode, pairing=pairing, generator=seeded(0))
        out = check_output(mixer, x, y, model=model, pairwise=pairwise, mask_method=mask_method)
        if mask_method:
            check_mask_identity(out, x, lam_is_mask_mean=lam_is_mask_mean)
        if lam_mode == "pair":
            assert torch.equal(out.lam, out.lam[out.index]), "partners must share lambda in pair mode"
    check_reproducible(make_mixer(), x, y, model=model)
    check_batch_size_one(make_mixer(), model=model)
    check_dtypes_and_formats(
        make_mixer(),
        mask_identity=mask_method,
        dtypes=dtypes,
        model=model_factory() if model_factory is not None else None,
    )
    if torch.cuda.is_available():  # CPU/CUDA equality wherever a GPU is present
        for lam_mode in ("batch", "elem"):
            check_cpu_cuda_equal(
                make_mixer(lam_mode=lam_mode), x, y, model_factory=model_factory, exact=model_factory is None
            )
    if alpha is not None:
        kw = {"correct_lam": False} if mask_method else {}
        check_beta_distribution(collect_lams(make_mixer(alpha=alpha, lam_mode="elem", **kw), 50), alpha)
        check_beta_distribution(collect_lams(make_mixer(alpha=alpha, **kw), 300), alpha)


def check_inplace(make_mixer: Callable[..., object]) -> None:
    """``inplace=True`` writes exactly the out-of-place result into the input tensor, in
    every lam_mode."""
    for lam_mode in ("batch", "elem"):
        x, y = make_batch()
        out = make_mixer(lam_mode=lam_mode, generator=seeded(6))(x, y)
        x2 = x.clone()
        out2 = make_mixer(lam_mode=lam_mode, inplace=True, generator=seeded(6))(x2, y)
        assert out2.inputs is x2, "inplace=True must return the input tensor itself"
        assert torch.equal(x2, out.inputs), "inplace result differs from the out-of-place one"
        assert_outputs_equal(dataclasses.replace(out2, inputs=out.inputs), out, "inplace")


def check_model_untouched(mixer, clf) -> None:
    """A mixer's extra pass through ``clf`` (in train mode) leaves no gradient, no changed
    weight or BatchNorm statistic, and every train/eval flag as it was."""
    clf.train()
    stats = {k: v.clone() for k, v in clf.state_dict().items()}
    x, y = make_batch()
    mixer(x, y, model=clf)
    assert clf.training and all(m.training for m in clf.modules())
    assert all(p.grad is None for p in clf.parameters())
    assert all(torch.equal(v, clf.state_dict()[k]) for k, v in stats.items())


def real_resnet_step(mixer_cfg: dict, b: int):
    """Mix a batch with a width-4 CIFAR ResNet-18 classifier holding the mixer: the mixer
    leaves its state and gradients alone, and a training step gives a finite loss.
    Returns ``(x, out)`` for method-specific checks."""
    from mixbench.models.classifiers.mixup_classifier import MixupClassifier

    torch.manual_seed(0)
    model = MixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 18, "width": 4},
        head={"type": "LinearHead", "num_classes": 5},
        mixer=mixer_cfg,
    )
    x, y = make_batch(b=b, h=32, w=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model.mixer(x, y, model=model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    loss = model.loss(x, y)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    return x, out
