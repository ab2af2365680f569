"""Loss normalisers that count things in the batch, shared by all processes of a run.

A loss that sums over the batch and divides by a count of the batch (RetinaNet's positive
anchors, the RPN's and RoI head's sampled boxes, a segmenter's labelled pixels) depends on
how the batch is split. Under DDP each process divides its own sum by its own count, and the
gradients are then averaged: with N processes of batch b that is not what one process of
batch N*b computes. Dividing by the count over all processes, over N, instead makes the
averaged gradient ``sum of all sums / count of all counts``, the single-process value.

The counts are all-reduced only inside ``counts_across_processes()``, which the trainer
enters around each training forward pass. Evaluation never does: its processes hold shards
of different lengths, and an all-reduce that one process does not reach would wait forever.
Every process must reach the same ``loss_normalizer`` calls in the same order; a loss that
skips work for an empty batch calls it before returning.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.distributed as dist

_ACROSS = contextvars.ContextVar("cvkit_counts_across_processes", default=False)


@contextlib.contextmanager
def counts_across_processes(enabled: bool = True) -> Iterator[None]:
    """Inside, ``loss_normalizer`` all-reduces its count over the default process group."""
    token = _ACROSS.set(enabled)
    try:
        yield
    finally:
        _ACROSS.reset(token)


def loss_normalizer(
    count: torch.Tensor | float, minimum: float = 1.0, like: torch.Tensor | None = None
) -> torch.Tensor:
    """What a summed loss is divided by: ``max(count, minimum)``, or across processes
    ``max(total count, minimum) / world size``.

    Args:
        count: this process's count (a number or a 0-d tensor; no gradient flows through it).
        minimum: the smallest count divided by (1 for "at least one positive"; a tiny value
            where a zero count means a zero loss).
        like: the result takes this tensor's dtype and device (default: ``count``'s, or
            float32 on the CPU).

    Returns:
        A 0-d tensor. Summed in float64, so counts of any size add up exactly.
    """
    device = like.device if like is not None else _device_of(count)
    dtype = like.dtype if like is not None else torch.float32
    total = torch.as_tensor(count, dtype=torch.float64, device=device).detach().clone()
    world = 1
    if _ACROSS.get() and dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world > 1:
            dist.all_reduce(total)
    return (total.clamp(min=minimum) / world).to(dtype)


def _device_of(count: torch.Tensor | float) -> torch.device:
    return count.device if isinstance(count, torch.Tensor) else torch.device("cpu")
