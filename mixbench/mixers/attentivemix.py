"""AttentiveMix (Walawalkar et al., "Attentive CutMix: An Enhanced Data Augmentation Approach
for Deep Learning Based Image Classification", ICASSP 2020) and OpenMixup's AttentiveMix+.

A feature extractor's final feature map of ``x_i``, averaged over channels, is an
activation map; the image is split into a grid of ``g_h x g_w`` cells (one per activation,
or ``grid x grid`` with the map resized), and the ``k`` most activated cells of ``x_i`` are
pasted onto its partner ``x_j`` (``j = index[i]``):

    image: ``x~ = M * x_i + (1 - M) * x_j``, ``M = 1`` on the top-``k`` cells of ``x_i``;
    label: ``y~ = lam * y_i + (1 - lam) * y_j`` with ``lam = mean(M)`` (``k / #cells`` for
    equal cells).

AttentiveMix: ``k = top_k = 6`` (the paper: the 6 most activated of 7 x 7 cells of an
ImageNet-pretrained ResNet-50 on 224 px images, cells of 32 px; its CIFAR code uses 8 x 8
cells of 4 px). AttentiveMix+ (OpenMixup): ``lam' ~ Beta(alpha, beta)`` (alpha 2, beta 8)
decides ``k = clamp(floor(lam' * #cells), 1, #cells)``. Beta(2, 8) is what OpenMixup's
benchmark page states and its configs pass; its ``attentivemix`` function, however, takes
no ``beta`` and draws ``Beta(alpha, alpha)`` (openmixup/models/augments/attentivemix.py), so
its published AttentiveMix+ numbers come from Beta(2, 2): about half the cells pasted on
average instead of a fifth. ``beta=2`` reproduces that code.

The extractor is the model being trained (``model.backbone``, run without gradients and in
eval mode, so BatchNorm statistics are neither used from the batch nor updated), or a
pretrained CNN given as a *local* checkpoint (a torchvision or timm architecture built
without weights, then loaded from the file: nothing is ever downloaded). OpenMixup's
``grid_size=32`` is the cell side in pixels at 224 px; its code replaces it by
``image size / feature-map size``, i.e. one cell per activation, which is ``grid=None`` here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._feature_mix import frozen_eval, model_backbone
from .base import MaskMixer, MixOutput
from .checks import check_alpha, check_flag, is_int_at_least
from .kernels import blend_pairs
from .sampling import beta_sample

LIBRARIES = ("timm", "torchvision")


class _Features(nn.Module):
    """The (B, C, h, w) feature map of a torchvision/timm classifier."""

    def __init__(self, net: nn.Module, library: str):
        super().__init__()
        self.net = net
        if library == "timm":
            self.body = None
        elif hasattr(net, "features") and isinstance(net.features, nn.Module):
            self.body = net.features  # VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt
        elif hasattr(net, "fc") and hasattr(net, "avgpool"):
            self.body = nn.Sequential(
                *[m for name, m in net.named_children() if name not in ("avgpool", "fc")]
            )  # ResNet, RegNet
        else:
            raise TypeError(
                f"cannot find the feature map of torchvision model {type(net).__name__}: "
                "AttentiveMix supports torchvision models with a `features` module or ResNet-"
                "style `avgpool`/`fc`; use a timm model or pass an nn.Module that returns "
                "(B, C, h, w) features"
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.body is None:  # a timm model
            return cast(Callable[[Tensor], Tensor], self.net.forward_features)(x)
        return self.body(x)


def load_pretrained(
    library: str,
    name: str,
    checkpoint: str,
    who: str = "AttentiveMix extractor",
    unset: str = "leave `extractor` unset to use the model being trained",
    **build,
) -> nn.Module:
    """The ``library`` model ``name`` built without pretrained weights (``build``: extra
    arguments of the constructor, e.g. ``num_classes``) with the state dict of the *local*
    file ``checkpoint`` loaded (under ``state_dict``/``model`` or at the top; a ``module.``
    prefix is dropped). Nothing is downloaded: a missing file is an error naming ``who`` needs
    it and the alternative ``unset``."""
    if library not in LIBRARIES:
        raise ValueError(f"{who} library must be one of {LIBRARIES}, got {library!r}")
    if not os.path.isfile(str(checkpoint)):
        raise FileNotFoundError(
            f"{who} checkpoint {checkpoint!r} does not exist; give the path of a local state "
            f"dict of the {library} model {name!r} (weights are never downloaded), or {unset}"
        )
    if library == "timm":
        import timm

        net = timm.create_model(name, pretrained=False, **build)
    else:
        import torchvision

        net = torchvision.models.get_model(name, weights=None, **build)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {checkpoint!r} does not fit the {library} model {name!r}: {err}"
        ) from None
    return net


def load_extractor(library: str, name: str, checkpoint: str) -> nn.Module:
    """Build ``name`` from ``library`` without pretrained weights and load ``checkpoint``."""
    return _Features(load_pretrained(library, name, checkpoint), library)


def resize_map(act: Tensor, size: tuple) -> Tensor:
    """(B, h, w) -> (B, *size): average pooling down (``size`` no larger than the map on
    either side), bilinear interpolation (align_corners False) otherwise."""
    if tuple(act.shape[1:]) == tuple(size):
        return act
    if size[0] <= act.shape[1] and size[1] <= act.shape[2]:
        return F.adaptive_avg_pool2d(act[:, None], size)[:, 0]
    return F.interpolate(act[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def top_cells(act: Tensor, k: Tensor) -> Tensor:
    """(B, n) bool: the ``k[i]`` largest entries of each row of ``act`` (B, n) (ties go to
    the lower index); vectorised for per-sample ``k``."""
    order = act.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(act.shape[1], device=act.device).expand_as(order))
    return ranks < k.to(act.device)[:, None]


def cells_to_pixels(cells: Tensor, height: int, width: int) -> Tensor:
    """(B, g_h, g_w) cell values -> (B, 1, H, W): pixel row ``r`` lies in cell ``r*g_h//H``."""
    gh, gw = cells.shape[1:]
    rows = torch.arange(height, device=cells.device) * gh // height
    cols = torch.arange(width, device=cells.device) * gw // width
    return cells[:, rows][:, :, cols][:, None]


class AttentiveMix(MaskMixer):
    """Paste the most activated grid cells of each image onto its partner.

    Args:
        top_k: number of cells pasted, default 6 (the paper); None: drawn per AttentiveMix+.
        alpha, beta: AttentiveMix+ only (``top_k=None``): ``lam' ~ Beta(alpha, beta)`` sets
            the number of cells, defaults 2 and 8.
        grid: cells per side; None (default) = one cell per activation of the extractor's
            final feature map (the paper and OpenMixup); an int resizes the activation map to
            ``grid x grid`` (average pooling down, bilinear up). At most the image size.
        extractor: None (default): ``model.backbone`` of the model being trained. Or a dict
            ``{library: timm | torchvision, name: <architecture>, checkpoint: <local path>}``,
            built without pretrained weights and loaded from the file; or an ``nn.Module``
            returning (B, C, h, w) features. External extractors run in float32, eval mode
            unless ``extractor_batch_stats``.
        extractor_batch_stats: run the external extractor in training mode: its BatchNorm
            normalises with each batch's statistics and updates its running statistics, as
            OpenMixup's frozen ``backbone_k`` (norm_eval False) does; default False.
        input_size: resize the batch to ``input_size x input_size`` (bilinear) for the
            extractor only, e.g. 224 for an ImageNet-pretrained network (OpenMixup does);
            default None: as given.
        correct_lam: lam = mean(M) exactly (default True); False: ``k / #cells`` for
            AttentiveMix, the drawn ``lam'`` for AttentiveMix+.
        prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base` (``lam_mode``
            matters for AttentiveMix+ only: one ``lam'`` per batch, sample or pair).
    """

    def __init__(
        self,
        top_k: int | None = 6,
        alpha: float = 2.0,
        beta: float = 8.0,
        grid: int | None = None,
        extractor: None | dict | nn.Module = None,
        input_size: int | None = None,
        extractor_batch_stats: bool = False,
        correct_lam: bool = True,
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        generator: torch.Generator | None = None,
    ):
        super().__init__(
            alpha=alpha,
            prob=prob,
            pairing=pairing,
            lam_mode=lam_mode,
            correct_lam=correct_lam,
            generator=generator,
        )
        for value, what in ((top_k, "top_k"), (grid, "grid"), (input_size, "input_size")):
            if value is not None and not is_int_at_least(value, 1):
                raise ValueError(f"{what} must be a positive integer or None, got {value!r}")
        self.top_k, self.grid, self.input_size = top_k, grid, input_size
        self.beta = check_alpha(beta, "beta")
        if top_k is None and (self.alpha == 0 or self.beta == 0):
            raise ValueError(
                "AttentiveMix+ (top_k=None) draws lam ~ Beta(alpha, beta) and "
                f"needs alpha > 0 and beta > 0, got alpha={alpha}, beta={beta}"
            )
        self.extractor = extractor
        self._net: nn.Module | None
        if isinstance(extractor, dict):
            unknown = set(extractor) - {"library", "name", "checkpoint"}
            if unknown or not {"library", "name", "checkpoint"} <= set(extractor):
                raise ValueError(
                    "extractor must be a dict with exactly the keys library, name "
                    f"and checkpoint, got {sorted(extractor)}"
                )
            self._net = load_extractor(**extractor)
        elif isinstance(extractor, nn.Module) or extractor is None:
            self._net = extractor
        else:
            raise ValueError(
                "extractor must be None (use the model being trained), a dict "
                "{library, name, checkpoint} or an nn.Module, got "
                f"{type(extractor).__name__}"
            )
        self.extractor_batch_stats = check_flag(extractor_batch_stats, "extractor_batch_stats")
        if self.extractor_batch_stats and self._net is None:
            raise ValueError(
                "extractor_batch_stats=True is for an external extractor (OpenMixup's "
                "pretrained backbone_k); the model being trained is always read in "
                "eval mode. Give `extractor` or leave extractor_batch_stats false"
            )
        if self._net is not None:
            self._net.train(self.extractor_batch_stats).requires_grad_(False)

    @property
    def requires(self) -> tuple:  # type: ignore[override]  # BaseMixer's class attribute, computed here
        """The model's backbone output map, unless an external extractor is given."""
        return ("output_map",) if self._net is None else ()

    @property  # BaseMixer's class attribute, computed here
    def needs_model(self) -> bool:  # type: ignore[override]
        """The model is needed unless an external extractor is given."""
        return self._net is None

    # -- activations ------------------------------------------------------------------------
    @torch.no_grad()
    def activation_map(self, x: Tensor, model=None) -> Tensor:
        """(B, g_h, g_w) float32 channel-mean activations of the extractor on ``x``."""
        if self.input_size is not None:  # resized in float32, fed in the batch's dtype
            x = F.interpolate(
                x.float(), size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            ).to(x.dtype)
        if self._net is not None:
            param = next(self._net.parameters(), None)
            if param is not None and param.device != x.device:
                self._net.to(x.device)
            feat = self._net(x.float())
        else:
            backbone = model_backbone(model, type(self).__name__)
            guard = frozen_eval(backbone) if isinstance(backbone, nn.Module) else contextlib.nullcontext()
            with guard:
                feat = backbone(x)
        if not isinstance(feat, Tensor) or feat.dim() != 4:
            shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
            raise ValueError(
                f"AttentiveMix needs a (B, C, h, w) feature map from its extractor, "
                f"got {shape}; use a convolutional extractor"
            )
        act = feat.float().mean(1)
        if self.grid is not None:
            act = resize_map(act, (self.grid, self.grid))
        return act

    # -- mixing ---------------------------------------------------------------------------------
    def sample_top_k(self, index: Tensor, n_cells: int) -> tuple:
        """(k (B,) int64, drawn lam (B,) float64) following ``top_k`` / AttentiveMix+."""
        b = index.shape[0]
        if self.top_k is not None:
            if self.top_k > n_cells:
                raise ValueError(
                    f"top_k={self.top_k} is more than the {n_cells} grid cells; "
                    "lower top_k or use a finer grid"
                )
            k = torch.full((b,), self.top_k, dtype=torch.int64)
            return k, k.double() / n_cells
        lam = self.per_sample(lambda n: beta_sample(self.alpha, self.beta, n, self.generator), index)
        k = (lam * n_cells).floor().long().clamp(1, n_cells)
        return k, lam

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b, _, h, w = x.shape
        if self.grid is not None and self.grid > min(h, w):
            raise ValueError(
                f"grid={self.grid} has more cells per side than the {h}x{w} image "
                "has pixels; use grid <= min(H, W)"
            )
        index = self.sample_index(b)
        act = self.activation_map(x, model)
        gh, gw = act.shape[1:]
        if gh > h or gw > w:
            raise ValueError(
                f"the extractor's {gh}x{gw} feature map is finer than the {h}x{w} "
                "image; set grid <= min(H, W)"
            )
        k, lam = self.sample_top_k(index, gh * gw)
        cells = top_cells(act.flatten(1), k).view(b, gh, gw)
        mask = cells_to_pixels(cells.float(), h, w)
        index = index.to(x.device)
        mixed = blend_pairs(x, index, mask, binary=True)
        return self.output(x, y, index, mask, lam, mixed)


class AttentiveMixPlus(AttentiveMix):
    """AttentiveMix+ (OpenMixup): the number of pasted cells follows ``lam' ~ Beta(alpha,
    beta)``, defaults alpha = 2, beta = 8 (see :class:`AttentiveMix` for every argument)."""

    def __init__(self, alpha: float = 2.0, beta: float = 8.0, **kwargs):
        if "top_k" in kwargs:
            raise ValueError(
                "AttentiveMixPlus draws the number of cells; for a fixed top_k use AttentiveMix(top_k=...)"
            )
        super().__init__(top_k=None, alpha=alpha, beta=beta, **kwargs)
