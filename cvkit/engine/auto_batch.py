"""``data.batch_size: auto``: the largest batch a GPU holds, the rest of the step accumulated.

The config says how many images an optimizer step takes (``data.total_batch_size``, what
the learning rate is for); ``auto`` measures how many of them one process can take at once.
A copy of the model trains real steps (forward, loss, backward, optimizer step, the run's
AMP) on a batch of copies of the largest image among a sample of the training data, at 1,
2, 4, ... images, until it runs out of memory or passes ``fraction`` of the GPU. A line
through the measured peaks predicts the largest batch under ``fraction``, one more step
measures it, and ``train.accumulate`` makes up the rest, so the effective batch and the
learning rate are the config's. The choice is written into the run's ``config.yaml``
(``train.accumulate``, ``batch_size`` removed), so a resume takes the same batches. The
run's random streams are restored after the probe.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from cvkit.config import Config
from cvkit.data.items import item_image, spread_items
from cvkit.engine import distributed
from cvkit.engine.batching import BatchPlan
from cvkit.engine.optim import build_optimizer
from cvkit.models.tasks.protocol import TaskModel

FRACTION = 0.85  # of the GPU's memory a training step may peak at
SAMPLE = 32  # images looked at for the largest


@dataclass
class BatchProbe:
    """What the probe measured: peak bytes per batch size tried, and the choice."""

    sizes: list[int]
    peaks: list[int]
    capacity: int
    chosen: int
    predicted_peak: int
    measured_peak: int
    out_of_memory_at: int | None = None

    def describe(self) -> str:
        gib = 1 << 30
        tried = ", ".join(f"{b}: {p / gib:.2f}" for b, p in zip(self.sizes, self.peaks))
        oom = f", out of memory at {self.out_of_memory_at}" if self.out_of_memory_at else ""
        return (
            f"peak GiB by batch {tried}{oom}; {self.chosen} predicted "
            f"{self.predicted_peak / gib:.2f}, measured {self.measured_peak / gib:.2f} of "
            f"{self.capacity / gib:.2f}"
        )


def probe_batch_size(
    measure: Callable[[int], int], limit: int, capacity: int, fraction: float = FRACTION
) -> BatchProbe:
    """The largest batch up to ``limit`` whose step peaks under ``fraction x capacity``.

    Args:
        measure: runs one training step at a batch size and returns its peak bytes; raises
            ``torch.OutOfMemoryError`` when the step does not fit.

    Raises:
        torch.OutOfMemoryError: not even one image fits.
    """
    budget = fraction * capacity
    sizes: list[int] = []
    peaks: list[int] = []
    oom_at = None
    size = 1
    while size <= limit:
        try:
            peak = measure(size)
        except torch.OutOfMemoryError:
            oom_at = size
            break
        sizes.append(size)
        peaks.append(peak)
        if peak > budget:
            break
        size *= 2
    fitting = [b for b, p in zip(sizes, peaks) if p <= budget]
    if not fitting:
        raise torch.OutOfMemoryError(
            f"one image does not fit in {fraction:.0%} of the GPU's {capacity / (1 << 30):.1f} "
            "GiB: lower the input size, use train.amp, or a smaller model"
        )
    ceiling = limit if oom_at is None else min(limit, oom_at - 1)
    if peaks[-1] > budget:
        ceiling = min(ceiling, sizes[-1] - 1)
    slope, intercept = _line(sizes, peaks)
    guess = int((budget - intercept) // slope) if slope > 0 else ceiling
    guess = max(max(fitting), min(guess, ceiling))
    chosen, measured = max(fitting), peaks[sizes.index(max(fitting))]
    if guess > chosen:
        try:
            peak = measure(guess)
            if peak <= budget:
                chosen, measured = guess, peak
        except torch.OutOfMemoryError:
            oom_at = guess if oom_at is None else min(oom_at, guess)
    return BatchProbe(
        sizes, peaks, capacity, chosen, int(intercept + slope * chosen), measured, oom_at
    )


def _line(sizes: list[int], peaks: list[int]) -> tuple[float, float]:
    """``(slope, intercept)`` of peak bytes against batch size (a constant with one point)."""
    if len(sizes) < 2:
        return float(peaks[0]), 0.0
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(peaks, float), 1)
    return float(slope), float(intercept)


def split_total(total: int, processes: int, largest: int) -> tuple[int, int]:
    """``(per_process, accumulate)``: the fewest accumulated batches that split ``total``
    images evenly over ``processes`` with at most ``largest`` images a batch."""
    share = total // processes
    for accumulate in range(1, share + 1):
        if share % accumulate == 0 and share // accumulate <= largest:
            return share // accumulate, accumulate
    return 1, share


def fit_batch(
    plan: BatchPlan,
    cfg: Config,
    model: nn.Module,
    settings: Any,
    dataset: Any,
    collate: Callable,
    device: torch.device,
    amp: torch.dtype | None,
    processes: distributed.Processes,
) -> tuple[BatchPlan, list[str]]:
    """Size the batch for ``plan`` (from ``data.batch_size: auto``) and write the choice
    into ``cfg``; returns the new plan and the lines for the run's log."""
    if not measures_memory(device):
        cfg.data["data"].pop("batch_size", None)
        return plan, [
            f"data.batch_size: auto measures GPU memory; on the {device.type} every process "
            f"takes its share of data.total_batch_size at once ({plan.per_process} images)"
        ]
    state = _rng_state()
    try:
        measure = _trial(model, settings, dataset, collate, device, amp)
        probe = probe_batch_size(measure, plan.total // plan.processes, _capacity(device))
    finally:
        _restore_rng(state)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    largest = _agreed(probe.chosen, processes)
    per_process, accumulate = split_total(plan.total, plan.processes, largest)
    cfg.data["data"].pop("batch_size", None)
    cfg.data.setdefault("train", {})["accumulate"] = accumulate
    cfg.origins["train.accumulate"] = "data.batch_size: auto"
    new = BatchPlan(per_process, plan.processes, accumulate, True, plan.lr_factor)
    return new, [
        f"data.batch_size: auto -> {per_process} per process x {accumulate} accumulated "
        f"({probe.describe()})"
    ]


def measures_memory(device: torch.device) -> bool:
    """Whether the probe can read a step's peak memory on ``device`` (CUDA's allocator)."""
    return device.type == "cuda"


def _trial(
    model: nn.Module,
    settings: Any,
    dataset: Any,
    collate: Callable,
    device: torch.device,
    amp: torch.dtype | None,
) -> Callable[[int], int]:
    """One training step of a copy of ``model`` at a batch size -> the step's peak bytes."""
    trial = copy.deepcopy(model).train()
    optimizer = build_optimizer(settings.train.optimizer, trial, settings.train.param_groups)
    item = _largest_item(dataset)

    def measure(size: int) -> int:
        batch = collate([item] * size).to(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                losses = cast(TaskModel, trial).loss(batch)
            functools.reduce(operator.add, losses.values()).backward()
            optimizer.step()
        finally:
            optimizer.zero_grad(set_to_none=True)
            del batch
        peak = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.empty_cache()
        return peak

    return measure


def _largest_item(dataset: Any) -> Any:
    """The item with the largest image among up to ``SAMPLE`` spread over the dataset."""
    return max(spread_items(dataset, SAMPLE), key=lambda item: item_image(item)[:, :, 0].size)


def _capacity(device: torch.device) -> int:
    return int(torch.cuda.get_device_properties(device).total_memory)


def _agreed(largest: int, processes: distributed.Processes) -> int:
    """The smallest of every process's largest batch: all must take the same."""
    return min(distributed.all_gather(largest, processes))


def _rng_state() -> tuple[Any, ...]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _restore_rng(state: tuple[Any, ...]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
