"""Validators for a mixer's inputs and options.

Each returns the value in its checked form (a float, a bool, a (min, max) pair) or raises a
``ValueError`` that says what was wrong, what was expected and how to fix it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch
from torch import Tensor


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
    """A Beta concentration: a finite float ``>= 0`` (0 disables mixing)."""
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
    """A probability: a float in [0, 1]."""
    try:
        prob = float(prob)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a probability in [0, 1], got {prob!r}") from None
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {prob}")
    return prob


def check_number(value: Any, name: str, low: float = 0.0, strict: bool = False) -> float:
    """A finite float ``>= low`` (``> low`` when ``strict``), or a clear error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    bound = f"{'>' if strict else '>='} {low:g}"
    if isinstance(value, bool) or not (number > low if strict else number >= low) or number == float("inf"):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def is_int_at_least(value: Any, low: int) -> bool:
    """Whether ``value`` is a Python integer ``>= low`` (``True``/``False`` are not: YAML's
    ``yes`` would read as 1). The callers raise their own message, which says what the
    integer means."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_flag(value: Any, name: str) -> bool:
    """``True`` or ``False`` only: a string such as ``'no'`` would read as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_choice(value: str, choices: Collection[str], name: str) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_range(
    value: Any, name: str, low: float = 0.0, high: float = float("inf"), integer: bool = False
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
