"""Shared by the step-time benchmarks: time training steps of two models on one batch.

A *step* is ``step(model, optimizer, *inputs)``: forward, loss, backward and optimizer step.
``compare`` builds both models of a ``Pair``, alternates which goes first from round to
round (neither always runs on a warmer, or busier, machine), times ``steps`` steps after one
warm-up step per round, and returns the median over all rounds and the cvkit / torchvision
ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

Step = Callable[..., None]


class Pair(NamedTuple):
    """One comparison: how to build each model and run one training step on it."""

    build_cvkit: Callable[[], nn.Module]
    cvkit_step: Step
    build_torchvision: Callable[[], nn.Module]
    torchvision_step: Step


def time_steps(step: Step, model: nn.Module, inputs: tuple, n: int) -> list[float]:
    """Seconds of each of ``n`` steps, after one warm-up step (kernels, allocations)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    step(model, opt, *inputs)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step(model, opt, *inputs)
        times.append(time.perf_counter() - start)
    return times


def compare(name: str, pair: Pair, inputs: tuple, steps: int, rounds: int) -> dict[str, float]:
    """Time both models of ``pair`` on ``inputs``; the median step time of each, and the ratio."""
    models = {
        "cvkit": (pair.build_cvkit(), pair.cvkit_step),
        "torchvision": (pair.build_torchvision(), pair.torchvision_step),
    }
    params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for side in list(models) if r % 2 == 0 else list(models)[::-1]:
            model, step = models[side]
            t = time_steps(step, model, inputs, steps)
            times[side] += t
            print(f"{name} round {r + 1} {side:>11}: median {statistics.median(t):.3f} s/step",
                  flush=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in models:
        print(
            f"{name} {k:>11}: {med[k]:.3f} s/step (median of {len(times[k])}), "
            f"{params[k]:,} parameters"
        )
    return {**med, "ratio": med["cvkit"] / med["torchvision"]}
