"""The DDP wrapper of mixbench's distributed runs: mmengine's, plus the staged training step
of the models that declare their losses in stages (:class:`mixbench.models.stages.StagedLosses`:
AutoMix, SAMix, AdAutoMix, MergeMix).

Those models backpropagate their losses stage by stage, freeing each stage's graph before
the next is built (:func:`mixbench.engine.staged.train_step_in_stages`): one encoder graph
is alive at a time instead of three (AutoMix, SAMix) or four (AdAutoMix);
docs/benchmarks_learnable.md has the measured peak memory. torch's DDP cannot take that as
it is: its reducer expects one backward per forward of the wrapper. So the wrapper runs the
staged step inside ``no_sync()`` (each process accumulates its own gradients, no
communication) and then averages the gradients over the processes with all-reduces of flat
buckets of DDP's ``bucket_cap_mb`` (25 MB by default), just before the optimizer step --
what DDP's bucketed all-reduce computes, once per update.
Every other model takes mmengine's ``MMDistributedDataParallel.train_step`` unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from mixbench.models.stages import StagedLosses
from mixbench.registry import MODEL_WRAPPERS

from .staged import train_step_in_stages


@MODEL_WRAPPERS.register_module()
class StagedDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that runs the training step of a model that declares
    its loss stages (:class:`StagedLosses`) with
    :func:`~mixbench.engine.staged.train_step_in_stages`, the gradients averaged over the
    processes before each optimizer step (see the module docstring). Same arguments as
    mmengine's wrapper."""

    def train_step(self, data, optim_wrapper) -> dict:
        if not isinstance(self.module, StagedLosses):
            return super().train_step(data, optim_wrapper)
        if not getattr(self, "_staged_announced", False):
            self._staged_announced = True
            print_log(
                f"{type(self.module).__name__}: staged backward under DDP, gradients "
                "averaged over the processes once per update",
                logger="current",
            )
        with self.no_sync():
            return train_step_in_stages(self.module, data, optim_wrapper, sync_gradients=self.sync_gradients)

    def sync_gradients(self) -> None:
        """Average the gradients of the trainable parameters over the processes.

        Every process must hold gradients for the same parameters (the step computes the
        same loss groups everywhere); a mismatch would pair unrelated buffers in the
        all-reduce, so it is checked first (one small all-reduce of which trainable
        parameters have a gradient) and reported with the first parameter in question."""
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        device = named[0][1].device if named else torch.device("cpu")
        has = torch.tensor([p.grad is not None for _, p in named], dtype=torch.int32, device=device)
        bounds = torch.cat([has, -has])
        dist.all_reduce(bounds, op=dist.ReduceOp.MAX, group=self.process_group)
        differ = (bounds[: len(named)] != -bounds[len(named) :]).nonzero()
        if len(differ):
            name, p = named[int(differ[0])]
            raise RuntimeError(
                f"StagedDistributedDataParallel: the processes hold gradients for different "
                f"parameters ({len(differ)} differ; the first, {name!r}, has one here: "
                f"{p.grad is not None}): every process must backpropagate the same loss groups"
            )
        grads = [p.grad for _, p in named if p.grad is not None]
        for bucket in self._buckets(grads):
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat, group=self.process_group)
            flat.div_(dist.get_world_size(self.process_group))
            for grad, synced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                grad.copy_(synced)

    def _buckets(self, grads: list) -> list[list]:
        """``grads`` in order, cut into runs of one dtype and at most DDP's bucket size (a
        single larger gradient is a bucket of its own): the extra memory of the all-reduce
        is one bucket, not a copy of the model's gradients."""
        cap = self.bucket_bytes_cap  # set by DDP from bucket_cap_mb
        buckets, size = [], 0
        for g in grads:
            nbytes = g.numel() * g.element_size()
            if not buckets or g.dtype != buckets[-1][0].dtype or size + nbytes > cap:
                buckets.append([])
                size = 0
            buckets[-1].append(g)
            size += nbytes
        return buckets
