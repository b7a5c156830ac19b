"""ResizeMix (Qin et al., "ResizeMix: Mixing Data with Preserved Object Information and True
Labels", arXiv 2012.11101, 2020).

Image: the whole paired image ``x_j``, resized (nearest neighbour) by a factor
``tau ~ U(scope)`` to ``int(tau * H) x int(tau * W)``, is pasted at a uniformly random
position inside ``x_i``; label: ``y~ = lam * y_i + (1 - lam) * y_j`` with
``lam = 1 - (pasted area) / (H * W)`` (``mask.mean``; ``1 - tau^2`` without
``correct_lam``). Published defaults (paper; OpenMixup CIFAR-100): scope (0.1, 0.8), alpha
1 (only used with ``use_alpha``: ``tau ~ Beta(alpha, alpha)``, redrawn from U(scope) when it
falls outside, as OpenMixup).

``mask`` is the weight of ``x_i``; the second component is the resized image, so
``inputs == mask * x + (1 - mask) * pasted`` (not ``x[index]``).

Placement (``placement``): ``inside`` (default) puts the ``int(tau * H) x int(tau * W)``
box at a uniformly random position inside the image, so the whole resized image is always
visible with its aspect ratio. ``centred`` is OpenMixup's code
(openmixup/models/augments/resizemix.py): the box spans ``c - cut // 2 .. c + cut // 2``
around a uniformly random pixel ``c`` and is clipped at the border, and the whole paired
image is resized (nearest) into the clipped box, squeezed when it was clipped. Clipping and
the even span make the pasted area smaller: with scope (0.1, 0.8) on 32 px, a mean of
0.159 of the image against 0.230 (tests/mixers/test_resizemix.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MaskMixer, MixOutput
from .boxes import box_inside
from .checks import check_choice, check_flag, check_range
from .kernels import match_format
from .sampling import beta_sample, uniform_sample

PLACEMENTS = ("inside", "centred")


def nearest_source(dst: Tensor, start: Tensor, out_size: Tensor, in_size: int) -> Tensor:
    """Source pixel of each destination pixel ``dst`` for a nearest resize of ``in_size``
    pixels to ``out_size`` placed at ``start``: ``floor((dst - start) * in / out)`` in
    float32, as ``torch.nn.functional.interpolate(mode='nearest')`` computes it."""
    scale = torch.tensor(float(in_size), dtype=torch.float32) / out_size.float()
    offset = (dst[None] - start[:, None]).clamp(min=0).float()
    return (offset * scale[:, None]).floor().long().clamp(max=in_size - 1)


class ResizeMix(MaskMixer):
    """Paste the whole paired image, shrunk by ``tau``, at a random place.

    Args:
        alpha: Beta concentration used only with ``use_alpha``, default 1.0.
        scope: (min, max) of the scale ``tau``, default (0.1, 0.8).
        use_alpha: draw ``tau ~ Beta(alpha, alpha)`` (redrawn from U(scope) outside scope)
            instead of ``tau ~ U(scope)``; default False (the paper). With alpha = 1 both
            give tau ~ U(scope).
        placement: ``inside`` (default) or ``centred`` (OpenMixup's clipped box around a
            random pixel, the image squeezed into it), see the module docstring.
        correct_lam, prob, pairing, lam_mode, generator: see :mod:`mixbench.mixers.base`.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        scope=(0.1, 0.8),
        use_alpha: bool = False,
        placement: str = "inside",
        prob: float = 1.0,
        pairing: str = "random",
        lam_mode: str = "batch",
        correct_lam: bool = True,
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
        self.scope = check_range(scope, "scope", low=0.0, high=1.0)
        self.use_alpha = check_flag(use_alpha, "use_alpha")
        self.placement = check_choice(placement, PLACEMENTS, "placement")

    def sample_tau(self, n: int) -> Tensor:
        uniform = uniform_sample(*self.scope, n, self.generator)
        if not self.use_alpha or self.alpha == 0:
            return uniform
        tau = beta_sample(self.alpha, self.alpha, n, self.generator)
        return torch.where((tau < self.scope[0]) | (tau > self.scope[1]), uniform, tau)

    def mix(self, x: Tensor, y: Tensor, model=None) -> MixOutput:
        b, _, h, w = x.shape
        index = self.sample_index(b)
        g = self.generator

        def draw(n: int) -> Tensor:
            tau = self.sample_tau(n)
            return torch.stack(
                [
                    tau,
                    torch.rand(n, dtype=torch.float64, generator=g),
                    torch.rand(n, dtype=torch.float64, generator=g),
                ],
                1,
            )

        tau, u_y, u_x = self.per_sample(draw, index).unbind(1)
        if self.placement == "inside":
            cut_h = (h * tau).floor().long().clamp(min=1)
            cut_w = (w * tau).floor().long().clamp(min=1)
            y1 = ((h - cut_h + 1) * u_y).floor().long().clamp(max=h - cut_h)
            x1 = ((w - cut_w + 1) * u_x).floor().long().clamp(max=w - cut_w)
            y2, x2 = y1 + cut_h, x1 + cut_w
        else:  # OpenMixup: c -/+ cut // 2 around a uniform pixel, clipped
            cut_h, cut_w = (h * tau).floor().long(), (w * tau).floor().long()
            cy = (h * u_y).floor().long().clamp(max=h - 1)
            cx = (w * u_x).floor().long().clamp(max=w - 1)
            y1, y2 = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
            x1, x2 = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
        # the whole partner resized into the (clipped) box; an empty box pastes nothing
        rows = nearest_source(torch.arange(h), y1, (y2 - y1).clamp(min=1), h).to(x.device)
        cols = nearest_source(torch.arange(w), x1, (x2 - x1).clamp(min=1), w).to(x.device)
        index = index.to(x.device)
        src = index[:, None, None]
        pasted = x[src, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        inside = box_inside((y1, y2, x1, x2), h, w, x.device)
        mixed = match_format(torch.where(inside, pasted, x), x)
        return self.output(x, y, index, (~inside).float(), 1 - tau**2, mixed)
