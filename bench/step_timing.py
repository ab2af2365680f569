"""Shared by the step-time benchmarks: time training steps of two models on one batch.

A *step* is ``step(model, optimizer, *inputs)``: forward, loss, backward and optimizer step.
``compare`` builds both models of a ``Pair``, alternates which goes first from round to
round (neither always runs on a warmer, or busier, machine), times ``steps`` steps after one
warm-up step per round, and returns the median over all rounds and the cvkit / torchvision
ratio. ``run_cli`` is the command line both scripts share; its ``--device``, ``--amp``,
``--channels-last`` and ``--compile`` apply to both models alike (``bench/gpu_check.sh``
runs the pairs on a GPU with them).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

Step = Callable[..., None]


class Pair(NamedTuple):
    """One comparison: how to build each model and run one training step on it."""

    build_cvkit: Callable[[], nn.Module]
    cvkit_step: Step
    build_torchvision: Callable[[], nn.Module]
    torchvision_step: Step


class Setup(NamedTuple):
    """Where and how both models run: device, autocast dtype, NHWC weights, torch.compile."""

    device: str = "cpu"
    amp: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile()  # in place: the forward, as train.compile does
        return model

    def autocast(self) -> Any:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.amp)

    def sync(self) -> None:
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()


CPU = Setup()  # the default: eager fp32 on the CPU


def to_device(value: Any, device: str) -> Any:
    """Tensors inside tuples, lists and dicts moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def time_steps(
    step: Step, model: nn.Module, inputs: tuple, n: int, setup: Setup = CPU
) -> list[float]:
    """Seconds of each of ``n`` steps, after one warm-up step (kernels, allocations; with
    ``compile``, the compilation)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    with setup.autocast():
        step(model, opt, *inputs)
    setup.sync()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with setup.autocast():
            step(model, opt, *inputs)
        setup.sync()
        times.append(time.perf_counter() - start)
    return times


def compare(
    name: str, pair: Pair, inputs: tuple, steps: int, rounds: int, setup: Setup = CPU
) -> dict[str, float]:
    """Time both models of ``pair`` on ``inputs``; the median step time of each, and the ratio."""
    inputs = to_device(inputs, setup.device)
    models = {
        "cvkit": (setup.prepare(pair.build_cvkit()), pair.cvkit_step),
        "torchvision": (setup.prepare(pair.build_torchvision()), pair.torchvision_step),
    }
    params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for side in list(models) if r % 2 == 0 else list(models)[::-1]:
            model, step = models[side]
            t = time_steps(step, model, inputs, steps, setup)
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
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights, both models")
    p.add_argument("--compile", action="store_true", help="torch.compile both models' forward")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    setup = Setup(args.device, amp, args.channels_last, args.compile)
    chosen = pairs(args.size)
    names = list(chosen) if args.model == "all" else [args.model]
    results = {}
    for name in names:
        torch.manual_seed(0)
        results[name] = compare(
            name, chosen[name], batch(args.size), args.steps, args.rounds, setup
        )
    for name, r in results.items():
        note = (notes or {}).get(name, "goal: <= 1.0")
        print(f"{name}: cvkit / torchvision = {r['ratio']:.3f}  ({note})")
    return results
