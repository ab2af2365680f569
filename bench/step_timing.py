"""Shared by the step-time benchmarks: time training steps of two models on one batch.

A *step* is ``step(model, optimizer, *inputs)``: forward, loss, backward and optimizer step.
``compare`` builds both models of a ``Pair``, alternates which goes first from round to
round (neither always runs on a warmer, or busier, machine), times ``steps`` steps after one
warm-up step per round, and returns the median over all rounds and the cvkit / torchvision
ratio. ``run_cli`` is the command line both scripts share.
"""

from __future__ import annotations

import argparse
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


def run_cli(
    description: str,
    pairs: Callable[[int], dict[str, Pair]],
    batch: Callable[[int], tuple],
    default_size: int,
    default_model: str = "all",
    notes: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """The command line both step-time scripts share: parse, time each chosen pair on
    ``batch(size)``, print each ratio with its ``notes`` entry (default: the goal)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", choices=[*pairs(default_size), "all"], default=default_model)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=default_size,
                   help=f"input side; the goal is at {default_size}")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    chosen = pairs(args.size)
    names = list(chosen) if args.model == "all" else [args.model]
    results = {}
    for name in names:
        torch.manual_seed(0)
        results[name] = compare(name, chosen[name], batch(args.size), args.steps, args.rounds)
    for name, r in results.items():
        note = (notes or {}).get(name, "goal: <= 1.0")
        print(f"{name}: cvkit / torchvision = {r['ratio']:.3f}  ({note})")
    return results
