"""The mixer contract shared by every method: :class:`MixOutput` (what a mixer returns),
:class:`BaseMixer` (the shared options and ``mixer(x, y, model=None)``) and :class:`MaskMixer`
(mask methods: ``correct_lam``).

Like the whole package, pure PyTorch (plus NumPy for the Beta draws): nothing here imports
mmengine or the rest of mixbench, so ``from mixbench.mixers import Mixup`` works in any training loop. The pieces a
mixer is built from live beside it: :mod:`~mixbench.mixers.checks` (validators),
:mod:`~mixbench.mixers.sampling` (lambdas and pairings), :mod:`~mixbench.mixers.kernels`
(mixing a batch with its partners) and :mod:`~mixbench.mixers.boxes` (CutMix-style boxes).

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
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .checks import check_alpha, check_choice, check_flag, check_inputs, check_prob
from .sampling import PAIRINGS, beta_sample, pairing_index

#: The ``lam_mode`` option's values (:meth:`BaseMixer.per_sample`).
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

    needs_model: bool = False
    #: what the mixer needs from the model's backbone, as capability names checked before
    #: training (``mixbench.models.backbones.base.CAPABILITY_HELP``): e.g. ``feature_map:last``
    #: (a feature map after the last stage), ``output_map``, ``stage:2`` (at least 2 stages)
    requires: tuple[str, ...] = ()

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
