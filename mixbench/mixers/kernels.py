"""The batch kernels: where a batch meets its partners ``x[index]``.

:func:`mix_pairs` runs an elementwise ``combine`` over the batch and its partners (chunked
on the CPU); :func:`weighted_pair` and :func:`pick_pair` are its two combines (a weighted
sum, a select); :func:`lerp_images` (Mixup), :func:`blend` and :func:`blend_pairs` (mask
methods) and :func:`scatter_pairs` (in-place Mixup) are built on them. Each computes
exactly what timm and torchvision compute (each product rounded before the sum), so results
are bit-identical to theirs and the same on CPU and CUDA. Why each is shaped as it is, with
the timings: docs/benchmarks_mixers.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: A mixing weight: one Python float for the batch, or a tensor broadcast against the images
#: ((B, 1, ...) per sample, (1, ...) shared).
Weight = float | Tensor
#: ``combine(first, second, out, *args)`` of :func:`mix_pairs`.
Combine = Callable[..., Tensor]

#: CPU chunk size of :func:`mix_pairs`: the operands of one chunk (its rows of the batch,
#: of the partners and of the output) stay in a core's L2 cache.
CHUNK_BYTES = 512 * 1024


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


def mix_pairs(
    x: Tensor, index: Tensor, combine: Combine, *args: object, inplace: bool = False, autograd: bool = False
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
    spills the L2 cache at 32 px already (a 128-image batch is 1.5 MiB). On CUDA the batch
    is one chunk. With ``autograd`` (some operand needs a gradient: out= writes cannot be
    differentiated) it is one out-of-place call of ``combine``. ``inplace=True`` writes into
    ``x`` in one call: the partners must be gathered whole first (later rows may be the
    sources of earlier ones), and then chunking only adds small ops. The timings behind
    both choices: docs/benchmarks_mixers.md.
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


def weighted_pair(
    first: Tensor, second: Tensor, out: Tensor | None, w_first: Weight, w_second: Weight
) -> Tensor:
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


def scatter_pairs(x: Tensor, index: Tensor, w_first: Weight, w_second: Weight, out: Tensor) -> Tensor:
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
    partners chunk by chunk, which keeps the work in the CPU's cache (the scatter form
    gains nothing there: docs/benchmarks_mixers.md). Differentiable in ``x`` (ManifoldMix
    and AlignMix mix features).
    """
    lam_a: Weight
    lam_b: Weight
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
