"""The mixer contract shared by every method: :class:`MixOutput`, :class:`BaseMixer` and
:class:`MaskMixer`.

Pure PyTorch (plus NumPy for Beta draws): nothing here imports mmengine or the rest of
mixbench, so ``from mixbench.mixers import Mixup`` works in any training loop.

Randomness convention (one rule for every mixer): all random draws -- lambda, the pairing
permutation, box positions, noise -- come from a *CPU* ``torch.Generator`` (the one given
to the mixer, or PyTorch's global CPU generator when none is given) and are moved to the
input's device afterwards. A mixer's output is therefore a function of the generator state
alone, identical on CPU and CUDA.

Shared options (documented once, here):

* ``alpha``: lambda ~ Beta(alpha, alpha); ``alpha = 0`` means lambda = 1 (no mixing).
* ``prob``: probability that a batch is mixed at all; otherwise it is returned unmixed
  with lam = 1 (OpenMixup's ``mix_prob``, timm's ``prob``).
* ``pairing``: which sample ``index[i]`` sample ``i`` is mixed with. ``random``: a uniform
  random permutation (OpenMixup, the Mixup paper's code; the default); ``no_repeat``:
  OpenMixup's CutMix and FMix pairing, a uniform random permutation redrawn while it leaves
  a sample paired with itself, checked at most 10 times (the 11th draw is kept unchecked; at
  batch 100 about 1% of batches keep a fixed point instead of 63%); ``reverse``:
  ``index[i] = B - 1 - i`` (timm's ``x.flip(0)``); ``roll``: ``index[i] = i - 1``
  (torchvision's ``x.roll(1, 0)``).
* ``lam_mode``: ``batch`` -- one lambda (and one box/mask) per batch, the published default;
  ``elem`` -- one per sample; ``pair`` -- one per pair of partners ``i`` and ``index[i]``,
  who then swap the same region (timm's ``pair`` mode). ``pair`` needs a pairing that is its
  own inverse: ``reverse``, or ``random``, which then draws a random perfect matching.
  Per-sample modes are vectorised: no Python loop over samples.
* ``correct_lam`` (mask methods): report lam as the exact area weight of the first image,
  ``lam = mask.mean((1, 2, 3))``, after boxes are clipped at the border (on by default).
* ``generator``: an optional CPU ``torch.Generator`` for every random draw.
* ``inplace`` (Mixup, CutMix and the DeiT recipe only; default False): write the mixed batch
  into the input tensor, as timm does, saving one copy of the batch. The clean batch is
  then gone, so ``inputs == mask * x + ...`` cannot be checked against it afterwards.

Batch size 1: no pair can be formed, so every mixer returns the batch unmixed with
``lam = 1``, ``y_b = y_a`` and ``index = [0]`` (and no mask).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

PAIRINGS = ("random", "no_repeat", "reverse", "roll")
#: Checks of OpenMixup's ``_no_repeat_shuffle_idx`` (pairing ``no_repeat``).
NO_REPEAT_CHECKS = 10
LAM_MODES = ("batch", "pair", "elem")


@dataclass
class MixOutput:
    """What a mixer returns.

    Attributes:
        inputs: (B, C, H, W) mixed batch (for feature-space methods: the clean batch).
        y_a: (B,) int64 labels of the first component.
        y_b: (B,) int64 labels of the second component (``y_a[index]`` for pairwise methods).
        lam: (B,) float32 weight of ``y_a`` in the target; ``1 - lam`` is the weight of ``y_b``.
        index: (B,) int64 pairing permutation: sample ``i`` is mixed with ``index[i]``.
        mask: (B, 1, H, W) float32 per-pixel weight of the first image for mask-based
            methods, so that ``inputs == mask * x + (1 - mask) * x[index]`` (ResizeMix:
            ``(1 - mask)`` weighs the resized partner, not ``x[index]``; PuzzleMix: the
            transported images); None otherwise.
        soft_targets: (B, K) target distribution for methods whose label is not a two-way
            mix (Co-Mixup, token labels). When present the loss uses it and ignores
            ``y_b`` / ``lam``.
        stage_hook: for methods that mix hidden features (ManifoldMix, AlignMix): a callable
            ``hook(stage, feat) -> feat`` that the backbone calls on its input (stage 0) and
            after each stage ``k = 1..num_stages``.
        extra_losses: loss terms the mixer computed itself and that training adds to the
            classification loss, by name (each a scalar tensor with its graph; each name
            contains ``loss`` and is not ``loss`` itself), e.g. Co-Mixup's
            ``{"clean_loss": clean_lam * CE(f(x), y)}``. Empty for most mixers.
    """

    inputs: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: Tensor
    index: Tensor
    mask: Tensor | None = None
    soft_targets: Tensor | None = None
    stage_hook: Callable[[int, Tensor], Tensor] | None = None
    extra_losses: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def unmixed(cls, x: Tensor, y: Tensor) -> MixOutput:
        """The batch as it is: lam = 1, each sample paired with itself."""
        b = x.shape[0]
        return cls(
            inputs=x,
            y_a=y,
            y_b=y,
            lam=torch.ones(b, device=x.device, dtype=torch.float32),
            index=torch.arange(b, device=x.device),
        )

    def target(self, num_classes: int) -> Tensor:
        """The (B, K) target distribution this output trains towards."""
        if self.soft_targets is not None:
            return self.soft_targets
        dtype = self.lam.dtype if self.lam.is_floating_point() else torch.float32
        one_a = torch.nn.functional.one_hot(self.y_a, num_classes).to(dtype)
        one_b = torch.nn.functional.one_hot(self.y_b, num_classes).to(dtype)
        lam = self.lam.to(dtype)[:, None]
        return lam * one_a + (1 - lam) * one_b


# -- input validation -------------------------------------------------------------------
def check_inputs(x: Tensor, y: Tensor) -> None:
    """Raise a clear error unless ``x`` is a float (B, C, H, W) batch and ``y`` int64 (B,)."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"mixer inputs must be a (B, C, H, W) tensor, got {shape}; "
            "add a batch dimension with x[None] for a single image"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"mixer inputs must be a floating-point batch, got {x.dtype}; "
            "mix after the data preprocessor has converted and normalised "
            "the images (e.g. x.float() / 255)"
        )
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        desc = f"{y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            "mixer labels must be an int64 tensor of shape (B,) holding class indices, "
            f"got {desc}; convert with labels.long() (one-hot labels are not accepted)"
        )
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"batch size mismatch: {x.shape[0]} images but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError("mixer got an empty batch (B = 0); drop empty batches before mixing")
    if y.device != x.device:
        raise ValueError(f"images are on {x.device} but labels on {y.device}; move both to the same device")


def check_alpha(alpha: float, name: str = "alpha") -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {alpha!r}") from None
    if not alpha >= 0 or alpha == float("inf"):
        raise ValueError(
            f"{name} must be a finite number >= 0 (lambda ~ Beta({name}, {name}); "
            f"0 disables mixing), got {alpha}"
        )
    return alpha


def check_prob(prob: float, name: str = "prob") -> float:
    try:
        prob = float(prob)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a probability in [0, 1], got {prob!r}") from None
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {prob}")
    return prob


def check_number(value, name: str, low: float = 0.0, strict: bool = False) -> float:
    """A finite float ``>= low`` (``> low`` when ``strict``), or a clear error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    bound = f"{'>' if strict else '>='} {low:g}"
    if isinstance(value, bool) or not (number > low if strict else number >= low) or number == float("inf"):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def check_flag(value, name: str) -> bool:
    """``True`` or ``False`` only: a string such as ``'no'`` would read as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_choice(value: str, choices, name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_range(
    value, name: str, low: float = 0.0, high: float = float("inf"), integer: bool = False
) -> tuple[Any, Any]:
    """A (min, max) pair (a single number means (v, v)) inside [low, high], min <= max."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    kind = "integers" if integer else "numbers"
    if len(pair) != 2:
        raise ValueError(f"{name} must be a number or a (min, max) pair, got {value!r}")
    try:
        numbers = tuple(float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold {kind}, got {value!r}") from None
    if integer and any(v != int(v) for v in numbers):  # 2.7 would be truncated to 2
        raise ValueError(f"{name} must hold {kind}, got {value!r}")
    pair = tuple(int(v) for v in numbers) if integer else numbers
    if not (low <= pair[0] <= pair[1] <= high):
        raise ValueError(f"{name} must be {kind} with {low} <= min <= max <= {high}, got {value!r}")
    return pair[0], pair[1]


# -- random draws -----------------------------------------------------------------------
def beta_sample(a: float, b: float, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws of Beta(a, b) as a float64 CPU tensor, reproducible from ``generator``.

    torch's Beta distribution cannot take a generator, so two 63-bit words drawn from the
    (CPU) torch generator set the state of a NumPy PCG64 generator that does the Beta draw.
    The PCG64 object is reused (one per thread) and its state written directly: building a
    seeded NumPy generator per call costs 15-20 us, the state write under 2 us.
    """
    state, inc = torch.randint(0, 2**63 - 1, (2,), generator=generator).tolist()
    rng = getattr(_beta_rng, "rng", None)
    if rng is None:
        rng = _beta_rng.rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "has_uint32": 0,
        "uinteger": 0,
        "state": {"state": state, "inc": 2 * inc + 1},
    }  # inc odd
    return torch.from_numpy(rng.beta(a, b, size=n))


_beta_rng = threading.local()


def uniform_sample(low: float, high: float, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws of U(low, high) as a float64 CPU tensor."""
    return low + (high - low) * torch.rand(n, dtype=torch.float64, generator=generator)


def randint_sample(low: int, high: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` integers uniform in [low, high) (int64, CPU)."""
    return torch.randint(low, high, (n,), generator=generator)


def pairing_index(
    batch_size: int, pairing: str, generator: torch.Generator | None = None, involution: bool = False
) -> Tensor:
    """The permutation that pairs sample ``i`` with ``index[i]`` (int64, CPU).

    ``random``: a uniformly random permutation (OpenMixup, the Mixup paper's code), or with
    ``involution=True`` a uniformly random perfect matching (``index[index[i]] == i``; with
    an odd batch one sample is left paired with itself);
    ``no_repeat``: OpenMixup's ``_no_repeat_shuffle_idx(ignore_failure=True)`` (its CutMix
    and FMix): the permutation is checked for fixed points (``index[i] == i``) and redrawn,
    at most :data:`NO_REPEAT_CHECKS` times, the last redraw kept unchecked; with
    ``involution=True`` the same random matching as ``random`` (it has no fixed point for
    an even batch);
    ``reverse``: the batch flipped, ``index[i] = B - 1 - i`` (timm);
    ``roll``: shifted by one, ``index[i] = i - 1`` (torchvision's ``batch.roll(1, 0)``).
    """
    if pairing in ("random", "no_repeat"):
        perm = torch.randperm(batch_size, generator=generator)
        if not involution:
            if pairing == "no_repeat":
                identity = torch.arange(batch_size)
                for _ in range(NO_REPEAT_CHECKS):
                    if not bool((perm == identity).any()):
                        break
                    perm = torch.randperm(batch_size, generator=generator)
            return perm
        index = torch.arange(batch_size)
        n = batch_size // 2 * 2
        index[perm[0:n:2]] = perm[1:n:2]
        index[perm[1:n:2]] = perm[0:n:2]
        return index
    if pairing == "reverse":
        return torch.arange(batch_size - 1, -1, -1)
    if pairing == "roll":
        return torch.arange(batch_size).roll(1, 0)
    raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")


# -- tensor helpers -----------------------------------------------------------------------
def match_format(out: Tensor, like: Tensor) -> Tensor:
    """Give ``out`` the memory format of ``like``: channels_last batches stay channels_last,
    contiguous ones contiguous (a mix assembled from permuted pieces, e.g. a resized box
    gathered as (B, H, W, C), would otherwise come out channels_last, and the network would
    train on mixed batches in another memory format than on clean ones)."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    if like.is_contiguous():
        return out.contiguous()
    return out


#: CPU chunk size of :func:`mix_pairs`: the operands of one chunk (its rows of the batch,
#: of the partners and of the output) stay in a core's L2 cache.
CHUNK_BYTES = 512 * 1024


def mix_pairs(
    x: Tensor, index: Tensor, combine: Callable, *args, inplace: bool = False, autograd: bool = False
) -> Tensor:
    """``out[i] = combine(x[i], x[index[i]], ...)`` for the whole batch: the one place where
    a batch meets its partners.

    ``combine(first, second, out, *chunk_args)`` mixes some rows of the batch: ``first``
    (those rows of ``x``), ``second`` (their partners, a scratch buffer it may overwrite),
    ``out`` (the output rows to write; then its return value is ignored) or None (then it
    returns a new tensor, differentiable: the ``autograd`` case), and ``args`` cut to the
    same rows (each tensor whose first dimension is the batch's; anything else, a scalar or a
    batch-shared (1, ...) tensor, is passed whole). It must be elementwise along the batch,
    so that chunking cannot change any value.

    On the CPU the batch is processed in equal chunks of about :data:`CHUNK_BYTES` (at
    most 16 chunks): an elementwise op that reads one batch-sized buffer and writes another
    spills the L2 cache at 32 px already (a 128-image batch is 1.5 MiB). Measured for
    Mixup (docs/benchmarks_mixers.md), chunked against one chunk: 1.43-1.54x faster at
    224 px, 0.92-1.56x at 32 px (1 and 2 threads). On CUDA the batch is one chunk. With
    ``autograd`` (some operand needs a gradient: out= writes cannot be differentiated) it
    is one out-of-place call of ``combine``. ``inplace=True`` writes into ``x`` in one call:
    the partners must be gathered whole first (later rows may be the sources of earlier
    ones), and then chunking measured no faster (0.83-1.01x, 32 and 224 px, 1 and 2
    threads; docs/benchmarks_mixers.md).
    """
    b = x.shape[0]
    if inplace:
        combine(x, x.index_select(0, index), x, *args)
        return x
    if autograd:
        return match_format(combine(x, x.index_select(0, index), None, *args), x)
    n = b
    if x.device.type == "cpu":
        chunks = min(16, max(1, round(x.numel() * x.element_size() / CHUNK_BYTES)))
        n = -(-b // chunks)  # balanced: 43 + 43 + 42 images at 32 px, not 42 x 3 + 2
    pieces = [
        a.split(n) if isinstance(a, Tensor) and a.dim() and a.shape[0] == b and b > 1 else None for a in args
    ]
    out = torch.empty_like(x)  # keeps x's memory format
    scratch = x.new_empty((n, *x.shape[1:]))
    for k, (first, idx, dest) in enumerate(zip(x.split(n), index.split(n), out.split(n))):
        second = torch.index_select(x, 0, idx, out=scratch[: idx.shape[0]])
        combine(first, second, dest, *[a if p is None else p[k] for a, p in zip(args, pieces)])
    return out


def weighted_pair(first: Tensor, second: Tensor, out: Tensor | None, w_first, w_second) -> Tensor:
    """``w_first * first + w_second * second`` (a :func:`mix_pairs` combine): each product is
    rounded before the sum (no fused multiply-add), as timm and torchvision compute a mixup,
    so the result is bit-identical to theirs and the same on CPU and CUDA. Weights of a
    higher precision than the images (float32 on a half batch) multiply in that precision,
    and each product is rounded to the images' dtype, in both forms. With ``out``: written
    there, ``second`` overwritten; without: out of place, differentiable in every operand."""
    if out is None:
        # products in the weights' precision, rounded to the images' (no-op when the same)
        return (first * w_first).to(first.dtype) + (second * w_second).to(first.dtype)
    second.mul_(w_second)
    return torch.mul(first, w_first, out=out).add_(second)


def pick_pair(first: Tensor, second: Tensor, out: Tensor | None, keep: Tensor) -> Tensor:
    """``first`` where ``keep``, else ``second`` (a :func:`mix_pairs` combine)."""
    if out is None:
        return torch.where(keep, first, second)
    return torch.where(keep, first, second, out=out)


def scatter_pairs(x: Tensor, index: Tensor, w_first, w_second, out: Tensor) -> Tensor:
    """``out[i] = w_first[i] * x[i] + w_second[i] * x[index[i]]`` in three passes over the
    batch, for a permutation ``index``; ``out`` may be ``x`` itself (in place).

    Each sample's product as a partner, ``x[k] * w_second[i]`` with ``index[i] = k``, is
    formed in the sample's own row, and ``index_add_`` adds it to row ``i``: a multiply, a
    multiply and a scatter-add, where gathering the partners first takes a fourth pass.
    The arithmetic is :func:`weighted_pair`'s (each product rounded to ``x``'s dtype, then
    one add), so the values are the same bit for bit. Weights are Python floats or (B, 1,
    ...) tensors. An ``index`` that is not a permutation leaves a row without a partner,
    whose inverse stays -1: indexing with it raises an out-of-range error.
    """
    b = x.shape[0]
    inverse = torch.full_like(index, -1).scatter_(0, index, torch.arange(b, device=index.device))
    if isinstance(w_second, Tensor) and w_second.shape[0] == b:
        w_second = w_second.index_select(0, inverse)  # row k as a partner of sample inverse[k]
    second = torch.mul(x, w_second, out=torch.empty_like(x))  # before ``out`` overwrites x
    return torch.mul(x, w_first, out=out).index_add_(0, inverse, second)


def lerp_images(x: Tensor, index: Tensor, lam: float | Tensor, inplace: bool = False) -> Tensor:
    """``lam * x + (1 - lam) * x[index]``, in ``x``'s dtype, with one lambda (a Python
    float) or one per sample (a (B,) tensor).

    The weights ``lam`` and ``1 - lam`` are formed in float64 and then rounded to the
    precision the multiply computes in: float32 for a float16 or bfloat16 batch (PyTorch's
    op math; a Python-float lambda is converted the same way), else ``x``'s dtype. Each
    product is rounded to ``x``'s dtype before the sum (:func:`weighted_pair`): exactly
    timm's and torchvision's arithmetic, bit-identical to theirs for the same lambda, on
    CPU and CUDA alike. ``inplace=True`` writes the result into ``x`` with
    :func:`scatter_pairs` (``index`` must then be a permutation, as every pairing is): three
    passes over the batch instead of four. Out of place, :func:`mix_pairs` gathers the
    partners chunk by chunk, which keeps the work in the CPU's cache and measured faster at
    224 px. Differentiable in ``x`` (ManifoldMix and AlignMix mix features).
    """
    lam_a: float | Tensor
    lam_b: float | Tensor
    if isinstance(lam, Tensor):
        shape = (-1,) + (1,) * (x.dim() - 1)
        dtype = torch.promote_types(x.dtype, torch.float32)  # op math: float32 for half
        lam_a = lam.to(device=x.device, dtype=dtype).view(shape)
        lam_b = (1 - lam).to(device=x.device, dtype=dtype).view(shape)
    else:
        lam_a, lam_b = float(lam), 1.0 - float(lam)
    if inplace:
        return scatter_pairs(x, index, lam_a, lam_b, out=x)
    return mix_pairs(
        x, index, weighted_pair, lam_a, lam_b, autograd=torch.is_grad_enabled() and x.requires_grad
    )


def blend(x: Tensor, second: Tensor, mask: Tensor, binary: bool = False) -> Tensor:
    """``mask * x + (1 - mask) * second`` in ``x``'s dtype, for a (B or 1, 1, H, W) mask.

    With ``binary=True`` (a 0/1 mask) a single ``torch.where`` gives the same values.
    """
    if binary:
        out = pick_pair(x, second, None, mask.to(x.device) > 0.5)
    else:
        m = mask.to(device=x.device, dtype=x.dtype)
        out = weighted_pair(x, second, None, m, 1 - m)
    return match_format(out, x)


def blend_pairs(x: Tensor, index: Tensor, mask: Tensor, binary: bool = False) -> Tensor:
    """:func:`blend` of ``x`` with its partners ``x[index]`` through :func:`mix_pairs`
    (chunked on the CPU; the same values)."""
    if binary:
        return mix_pairs(
            x, index, pick_pair, mask.to(x.device) > 0.5, autograd=torch.is_grad_enabled() and x.requires_grad
        )
    m = mask.to(device=x.device, dtype=x.dtype)  # the mask may need a gradient (AutoMix)
    return mix_pairs(
        x,
        index,
        weighted_pair,
        m,
        1 - m,
        autograd=torch.is_grad_enabled() and (x.requires_grad or m.requires_grad),
    )


# -- base classes ---------------------------------------------------------------------------
class BaseMixer(abc.ABC):
    """Base class of all mixers (the shared options are documented in this module's docstring).

    Args:
        alpha: lambda ~ Beta(alpha, alpha); ``alpha == 0`` means no mixing (lambda = 1).
        prob: probability that a batch is mixed at all (else it is returned unmixed, lam=1).
        pairing: ``random`` (default), ``no_repeat`` (OpenMixup's CutMix/FMix),
            ``reverse`` (timm) or ``roll`` (torchvision).
        lam_mode: ``batch`` (default), ``pair`` or ``elem``.
        generator: optional CPU ``torch.Generator`` used for every random draw.

    A batch of size 1 cannot be paired: it is returned unmixed with ``lam = 1``.
    Subclasses implement :meth:`mix`.
    """

    needs_model = False
    #: what the mixer needs from the model's backbone, as capability names checked before
    #: training (``mixbench.models.backbones.base.CAPABILITY_HELP``): e.g. ``feature_map:last``
    #: (a feature map after the last stage), ``output_map``, ``stage:2`` (at least 2 stages)
    requires: tuple = ()

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        self.alpha = check_alpha(alpha)
        self.prob = check_prob(prob)
        self.pairing = check_choice(pairing, PAIRINGS, "pairing")
        self.lam_mode = check_choice(lam_mode, LAM_MODES, "lam_mode")
        if lam_mode == "pair" and pairing == "roll":
            raise ValueError(
                "lam_mode='pair' needs partners that swap with each other "
                "(pairing='reverse' or 'random'); 'roll' pairs i with i-1 but "
                "i-1 with i-2. Use lam_mode='elem' with pairing='roll'"
            )
        self.generator = generator

    @property
    def generator(self) -> torch.Generator | None:
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        if generator is not None and (
            not isinstance(generator, torch.Generator) or generator.device.type != "cpu"
        ):
            raise ValueError(
                "generator must be a CPU torch.Generator (all draws are made on "
                "the CPU so that CPU and CUDA give identical results), got "
                f"{generator!r}"
            )
        self._generator = generator

    # -- randomness helpers -------------------------------------------------------------
    def per_sample(self, draw: Callable[[int], Tensor], index: Tensor, expand: bool = True) -> Tensor:
        """Draws following ``lam_mode``, shape (B, ...): ``draw(n)`` returns n draws.

        ``batch``: one draw repeated B times (``expand=False``: returned once, shape
        (1, ...)); ``elem``: B draws; ``pair``: B draws of which sample ``i`` uses the one of
        ``min(i, index[i])``, so partners share it.
        """
        b = index.shape[0]
        if self.lam_mode == "batch":
            one = draw(1)
            return one.expand(b, *one.shape[1:]).clone() if expand else one
        values = draw(b)
        if self.lam_mode == "pair":
            values = values[torch.minimum(torch.arange(b), index.cpu())]
        return values

    def sample_lam(self, index: Tensor) -> Tensor:
        """(B,) float64 CPU lambdas ~ Beta(alpha, alpha) following ``lam_mode``."""
        if self.alpha == 0:
            return torch.ones(index.shape[0], dtype=torch.float64)
        return self.per_sample(lambda n: beta_sample(self.alpha, self.alpha, n, self.generator), index)

    def sample_lam_value(self) -> float:
        """One lambda ~ Beta(alpha, alpha) as a Python float: the value ``sample_lam`` repeats
        in ``batch`` mode (the same draw from the generator), without building tensors."""
        if self.alpha == 0:
            return 1.0
        return beta_sample(self.alpha, self.alpha, 1, self.generator).item()

    def sample_index(self, batch_size: int) -> Tensor:
        """(B,) int64 CPU pairing; a matching when ``lam_mode == 'pair'``."""
        return pairing_index(batch_size, self.pairing, self.generator, involution=self.lam_mode == "pair")

    def apply_this_batch(self) -> bool:
        """Bernoulli(prob) draw deciding whether this batch is mixed."""
        if self.prob >= 1.0:
            return True
        if self.prob <= 0.0:
            return False
        return bool(torch.rand(1, generator=self.generator).item() < self.prob)

    def identity(self, x: Tensor, y: Tensor) -> MixOutput:
        """The unmixed output: lam = 1, identity pairing."""
        return MixOutput.unmixed(x, y)

    # -- public API ----------------------------------------------------------------------
    def __call__(self, x: Tensor, y: Tensor, model: nn.Module | None = None) -> MixOutput:
        check_inputs(x, y)
        if self.needs_model and model is None:
            raise ValueError(f"{type(self).__name__} needs the model: call mixer(x, y, model=...)")
        if x.shape[0] < 2 or not self.apply_this_batch():
            return self.identity(x, y)
        return self.mix(x, y, model=model)

    @abc.abstractmethod
    def mix(self, x: Tensor, y: Tensor, model: nn.Module | None = None) -> MixOutput:
        """Mix a batch of at least two samples (``__call__`` has validated it)."""

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_")]
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


class MaskMixer(BaseMixer):
    """A mixer whose output is ``mask * x + (1 - mask) * second`` for a per-pixel ``mask``.

    Adds ``correct_lam`` (default True): lam is then the exact pixel weight of the first
    image, ``mask.mean((1, 2, 3))`` (for boxes: after clipping at the border); with False,
    lam is the value drawn from Beta(alpha, alpha) before any rounding or clipping.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        correct_lam: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, lam_mode=lam_mode, generator=generator)
        self.correct_lam = check_flag(correct_lam, "correct_lam")

    def output(
        self, x: Tensor, y: Tensor, index: Tensor, mask: Tensor, lam: Tensor, mixed: Tensor
    ) -> MixOutput:
        """Assemble the :class:`MixOutput` of a mask method.

        ``mask`` is (B or 1, 1, H, W) float32 on ``x``'s device, ``lam`` the drawn (B,)
        lambda, ``mixed`` the mixed batch.
        """
        b = x.shape[0]
        if self.correct_lam:  # one mean per distinct mask (a shared mask is averaged once)
            lam = mask.mean((1, 2, 3))
            lam = lam.expand(b).contiguous() if lam.shape[0] != b else lam
        mask = mask.expand(b, 1, *mask.shape[2:])
        return MixOutput(
            inputs=mixed,
            y_a=y,
            y_b=y.index_select(0, index),
            lam=lam.to(device=x.device, dtype=torch.float32),
            index=index,
            mask=mask,
        )
