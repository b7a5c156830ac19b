"""The shared mixer machinery: input validation, pairings, lam modes, registration and the
config fragments of the static mixers."""

from pathlib import Path

import pytest
import torch
from mbtest.mixers import assert_outputs_equal, make_batch, seeded
from mbtest.repo import load_script

from mixbench.mixers import (
    AlignMix,
    CutMix,
    DeiTMixer,
    FMix,
    GridMix,
    Mixup,
    RandomChoiceMixer,
    ResizeMix,
    SaliencyMix,
    SmoothMix,
    Vanilla,
    kernels,
)
from mixbench.mixers.base import BaseMixer, MixOutput
from mixbench.mixers.sampling import pairing_index

ROOT = Path(__file__).resolve().parents[2]
STATIC = {
    "vanilla": Vanilla,
    "mixup": Mixup,
    "cutmix": CutMix,
    "deit": RandomChoiceMixer,
    "smoothmix": SmoothMix,
    "saliencymix": SaliencyMix,
    "fmix": FMix,
    "gridmix": GridMix,
    "resizemix": ResizeMix,
}


@pytest.mark.parametrize(
    "x, y, message",
    [
        (torch.zeros(3, 8, 8), torch.zeros(3, dtype=torch.long), r"\(B, C, H, W\) tensor"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), "floating-point"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(2), "int64 tensor of shape"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, dtype=torch.long), "one-hot labels are not accepted"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(3, dtype=torch.long), "2 images but 3 labels"),
        (torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long), "empty batch"),
        ("images", torch.zeros(2, dtype=torch.long), "got str"),
    ],
)
def test_bad_inputs_are_explained(x, y, message):
    with pytest.raises(ValueError, match=message):
        CutMix()(x, y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=-1), "alpha must be a finite number >= 0"),
        (dict(alpha="big"), "alpha must be a number"),
        (dict(prob=1.5), "prob is a probability"),
        (dict(pairing="shuffle"), "pairing must be one of"),
        (dict(lam_mode="sample"), "lam_mode must be one of"),
        (dict(lam_mode="pair", pairing="roll"), "lam_mode='pair' needs partners"),
        (dict(generator="seed"), "generator must be a CPU torch.Generator"),
    ],
)
def test_bad_options_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mixup(**kwargs)


def test_bad_method_options_are_explained():
    with pytest.raises(ValueError, match=r"scope must be numbers with 0.0 <= min <= max <= 1.0"):
        ResizeMix(scope=(0.9, 0.1))
    with pytest.raises(ValueError, match="n_holes must be integers"):
        GridMix(n_holes=(0, 4))
    with pytest.raises(ValueError, match="max_soft"):
        FMix(max_soft=0.7)
    with pytest.raises(ValueError, match="n_holes must hold integers, got 2.7"):
        GridMix(n_holes=2.7)  # was truncated to (2, 2)
    assert GridMix(n_holes=(2.0, 6)).n_holes == (2, 6)
    with pytest.raises(ValueError, match=r"decay_power must be a finite number >= 0, got -1$"):
        FMix(decay_power=-1)  # was explained as a Beta concentration
    for eps in ("a", None, 0):
        with pytest.raises(ValueError, match=r"eps \(Sinkhorn regularisation\) must be a finite number > 0"):
            AlignMix(eps=eps)
    for make in (
        lambda: CutMix(correct_lam="no"),
        lambda: Mixup(inplace="False"),
        lambda: AlignMix(official_stop=1),
    ):
        with pytest.raises(ValueError, match="must be true or false"):
            make()  # a non-empty string would read as True


def test_model_based_mixer_without_model_is_explained():
    class NeedsModel(BaseMixer):
        needs_model = True

        def mix(self, x, y, model=None):
            return self.identity(x, y)

    x, y = make_batch()
    with pytest.raises(ValueError, match=r"needs the model: call mixer\(x, y, model=...\)"):
        NeedsModel()(x, y)
    assert RandomChoiceMixer([NeedsModel(), Mixup()]).needs_model


def test_pairings():
    assert pairing_index(5, "reverse").tolist() == [4, 3, 2, 1, 0]
    assert pairing_index(5, "roll").tolist() == [4, 0, 1, 2, 3]
    perm = pairing_index(7, "random", seeded(0))
    assert sorted(perm.tolist()) == list(range(7))
    for b in (6, 7):
        match = pairing_index(b, "random", seeded(1), involution=True)
        assert sorted(match.tolist()) == list(range(b))
        assert torch.equal(match[match], torch.arange(b))  # partners swap
        assert int((match == torch.arange(b)).sum()) == b % 2


def test_no_repeat_pairing_is_openmixups_redraw_rule():
    """OpenMixup's ``_no_repeat_shuffle_idx(ignore_failure=True)`` (augments/cutmix.py:7-25):
    a permutation with a fixed point is redrawn, checked 10 times, the 11th draw kept
    unchecked. A uniform permutation of 8 is fixed-point free with probability
    D_8 / 8! = 14833 / 40320, so a fixed point survives with probability q**11,
    q = 1 - 14833 / 40320 (0.0064), against q (0.632) for ``random``."""
    q = 1 - 14833 / 40320
    n = 4000
    g = seeded(11)
    kept = sum(bool((pairing_index(8, "no_repeat", g) == torch.arange(8)).any()) for _ in range(n))
    expected, sd = n * q**11, (n * q**11 * (1 - q**11)) ** 0.5
    assert abs(kept - expected) < 4 * sd, (kept, expected)
    g = seeded(11)
    plain = sum(bool((pairing_index(8, "random", g) == torch.arange(8)).any()) for _ in range(n))
    assert abs(plain - n * q) < 4 * (n * q * (1 - q)) ** 0.5
    perm = pairing_index(8, "no_repeat", seeded(0))
    assert sorted(perm.tolist()) == list(range(8))
    match = pairing_index(8, "no_repeat", seeded(1), involution=True)  # lam_mode='pair'
    assert torch.equal(match[match], torch.arange(8))
    assert torch.equal(
        CutMix(pairing="no_repeat", generator=seeded(2))(*make_batch()).index,
        pairing_index(6, "no_repeat", seeded(2)),
    )


def test_lam_modes_share_draws_as_documented():
    b = 8
    for mode, distinct in (("batch", 1), ("elem", 8), ("pair", 4)):
        mixer = Mixup(lam_mode=mode, pairing="reverse", generator=seeded(0))
        index = mixer.sample_index(b)
        lam = mixer.sample_lam(index)
        assert lam.dtype == torch.float64 and len(set(lam.tolist())) == distinct
        if mode == "pair":
            assert torch.equal(lam, lam[index])


def test_one_lambda_value_is_the_batch_mode_draw():
    """Mixup's batch mode draws its lambda as a float (sample_lam_value): the same draw from
    the generator as sample_lam's repeated value."""
    index = torch.arange(4)
    as_tensor = Mixup(alpha=0.7, generator=seeded(9)).sample_lam(index)
    as_float = Mixup(alpha=0.7, generator=seeded(9)).sample_lam_value()
    assert isinstance(as_float, float) and as_tensor.tolist() == [as_float] * 4
    assert Mixup(alpha=0.0).sample_lam_value() == 1.0


def test_target_sums_to_one_and_weights_labels():
    out = MixOutput(
        inputs=torch.zeros(2, 1, 2, 2),
        y_a=torch.tensor([0, 1]),
        y_b=torch.tensor([1, 1]),
        lam=torch.tensor([0.25, 0.5]),
        index=torch.tensor([1, 0]),
    )
    assert torch.equal(out.target(3), torch.tensor([[0.25, 0.75, 0.0], [0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("name", sorted(STATIC))
def test_config_fragment_builds_the_registered_mixer(name):
    from mixbench.config import load_config
    from mixbench.registry import MIXERS, build_mixer

    cfg = load_config(ROOT / "configs" / "methods" / f"{name}.yaml")["method"]["mixer"]
    mixer = build_mixer(cfg)
    assert type(mixer) is STATIC[name] and MIXERS.get(cfg["type"]) is STATIC[name]
    if "alpha" in cfg:
        assert mixer.alpha == cfg["alpha"]
    x, y = make_batch()
    mixer.generator = seeded(0)
    assert mixer(x, y).inputs.shape == x.shape


def test_config_alphas_are_openmixups_cifar100_defaults():
    """alpha column of OpenMixup's CIFAR-100 ResNet-18 table (docs/en/mixup_benchmarks/Mixup_cifar.md)."""
    from mixbench.config import load_config

    published = {
        "mixup": 1.0,
        "cutmix": 0.2,
        "smoothmix": 0.2,
        "saliencymix": 0.2,
        "fmix": 0.2,
        "gridmix": 0.2,
        "resizemix": 1.0,
    }
    for name, alpha in published.items():
        cfg = load_config(ROOT / "configs" / "methods" / f"{name}.yaml")["method"]["mixer"]
        assert cfg["alpha"] == alpha, name


def test_visualize_mixers_writes_a_png(tmp_path):
    tool = load_script("tools/analysis/visualize_mixers.py")
    out = tool.main(
        [
            "--dataset",
            "Digits",
            "--methods",
            "Mixup",
            "CutMix",
            "FMix",
            "--num-samples",
            "3",
            "--alpha",
            "1.0",
            "--out",
            str(tmp_path / "grid.png"),
        ]
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mixer = tool.build_method("CutMix", use_configs=True)
    assert mixer.alpha == 0.2  # configs/methods/cutmix.yaml


@pytest.mark.parametrize("name", sorted(STATIC))
def test_classifier_trains_with_the_config_fragment(name):
    """Every static method, built from its config fragment inside a MixupClassifier
    (width-16 ResNet-8), gives a finite loss and gradients for 3 SGD steps."""
    from mbtest.repo import model_of

    from mixbench.registry import MODELS

    cfg = model_of(name, head={"num_classes": 5})
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    assert type(model.mixer) is STATIC[name]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = make_batch(b=8, c=1, h=16, w=16)
    for _ in range(3):
        loss = model.loss(x, y)["loss"]
        assert torch.isfinite(loss) and loss > 0
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()


def test_deit_recipe_trains_two_epochs_on_digits_through_train_py(tmp_path):
    from mbtest.training import train_on_digits

    train_on_digits(tmp_path, "deit")


CHUNKED = {
    "mixup": Mixup,
    "cutmix": CutMix,
    "deit": DeiTMixer,
    "smoothmix": SmoothMix,
    "fmix": FMix,
    "gridmix": GridMix,
}


@pytest.mark.parametrize("name", sorted(CHUNKED))
@pytest.mark.parametrize("lam_mode", ["batch", "elem"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_chunking_changes_no_value(monkeypatch, name, lam_mode, channels_last):
    """On the CPU a batch meets its partners chunk by chunk (mix_pairs); the chunk size must
    not change a single bit: 35 images in chunks of 3 (the last one short) against one
    chunk, with the same draws."""
    x, y = make_batch(b=35, h=12, w=12, channels_last=channels_last)
    outs = []
    for chunk_bytes in (10**9, 1):  # one chunk; the minimum, ceil(35 / 16) = 3 images
        monkeypatch.setattr(kernels, "CHUNK_BYTES", chunk_bytes)
        out = CHUNKED[name](generator=seeded(3), lam_mode=lam_mode)(x.clone(), y)
        if channels_last:
            assert out.inputs.is_contiguous(memory_format=torch.channels_last)
        outs.append(out)
    assert not torch.equal(outs[0].inputs, x)
    assert_outputs_equal(outs[0], outs[1], "chunked vs one chunk")


def test_mix_pairs_chunks_cover_the_batch_once(monkeypatch):
    """Each row is combined exactly once, with its own partner and its own per-sample
    argument, whatever the chunk size; shared arguments are passed whole."""
    x = torch.arange(35, dtype=torch.float32).view(35, 1, 1, 1).expand(35, 1, 2, 2).contiguous()
    index = pairing_index(35, "random", seeded(0))
    per_sample = torch.arange(35, dtype=torch.float32).view(35, 1, 1, 1) / 1000
    shared = torch.full((1, 1, 1, 1), 0.5)
    calls = []

    def combine(first, second, out, w, s):
        calls.append(first.shape[0])
        assert s is shared and w.shape[0] == first.shape[0]
        res = first * 100 + second + w + s
        return res if out is None else out.copy_(res)

    for chunk_bytes, sizes in ((10**9, [35]), (1, [3] * 11 + [2])):
        monkeypatch.setattr(kernels, "CHUNK_BYTES", chunk_bytes)
        calls.clear()
        out = kernels.mix_pairs(x, index, combine, per_sample, shared)
        assert calls == sizes
        expected = torch.arange(35.0) * 100 + index.float() + torch.arange(35.0) / 1000 + 0.5
        assert torch.equal(out[:, 0, 0, 0], expected)
        calls.clear()  # in place: one call (the partners are gathered whole first)
        x_in = x.clone()
        assert kernels.mix_pairs(x_in, index, combine, per_sample, shared, inplace=True) is x_in
        assert calls == [35] and torch.equal(x_in, out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True])
def test_scatter_pairs_equals_gathering_the_partners(dtype, per_sample):
    """The in-place path (partner products scattered with index_add_) gives the values of
    gathering the partners first, bit for bit, for any permutation, in place or not, and
    keeps channels_last."""
    x = torch.randn(9, 3, 5, 4).to(dtype).contiguous(memory_format=torch.channels_last)
    index = pairing_index(9, "random", seeded(3))
    if per_sample:
        w_first = torch.rand(9, 1, 1, 1, generator=seeded(4))
        w_second = 1 - w_first
    else:
        w_first, w_second = 0.3, 0.7
    gathered = kernels.weighted_pair(x, x.index_select(0, index), torch.empty_like(x), w_first, w_second)
    out = kernels.scatter_pairs(x, index, w_first, w_second, out=torch.empty_like(x))
    assert torch.equal(out, gathered)
    x_in = x.clone()
    assert kernels.scatter_pairs(x_in, index, w_first, w_second, out=x_in) is x_in
    assert torch.equal(x_in, gathered)
    assert x_in.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("w", [0.5, torch.full((4, 1, 1, 1), 0.5)])
def test_scatter_pairs_refuses_an_index_that_is_not_a_permutation(w):
    x = torch.randn(4, 1, 2, 2)
    with pytest.raises((IndexError, RuntimeError), match="out of (range|bounds)"):
        kernels.scatter_pairs(x, torch.tensor([1, 1, 2, 3]), w, w, out=torch.empty_like(x))


def test_is_int_at_least_takes_python_integers_only():
    from mixbench.mixers.checks import is_int_at_least

    assert is_int_at_least(1, 1) and is_int_at_least(0, 0) and is_int_at_least(7, 3)
    for value in (0, -1, True, False, 1.0, "2", None):  # below the bound, a bool, a float, text
        assert not is_int_at_least(value, 1), value
