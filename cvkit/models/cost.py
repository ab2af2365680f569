"""What one forward pass of a model costs: per-module output shapes, parameters and FLOPs.

FLOPs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which counts
matrix products and convolutions at 2 FLOPs per multiply-add, so ``flops / 2`` is the
multiply-adds (MACs) that torchvision's model metadata and fvcore report. Element-wise ops,
pooling, normalisation, resizing and sorting are not counted, as in those figures. Operators
outside ``aten`` (``torchvision::nms``, ``torchvision::roi_align``) are listed by name and
call count, so a table never hides that a detector's NMS was left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerCost:
    """One module of the model: ``path`` as in ``named_modules()`` (``""``: the model)."""

    path: str
    type: str
    output: str  # the output's shape(s), ``-`` when the module was not called as a module
    params: int
    flops: int
    calls: int


@dataclass
class ModelCost:
    """One forward pass: every module's cost, and the totals of the whole pass.

    ``flops`` is the whole pass, which includes work done outside any submodule (a graph's
    pre- and post-processing); ``uncounted`` names the operators FlopCounterMode has no
    formula for, with how often each ran.
    """

    input_shapes: list[tuple[int, ...]]
    layers: list[LayerCost]
    flops: int
    params: int
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> float:
        """Multiply-adds: half the FLOPs."""
        return self.flops / 2


class _ForeignOps(TorchDispatchMode):
    """Records each operator outside the ``aten`` and ``prim`` namespaces, with its count."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        namespace = getattr(func, "namespace", "aten")
        if namespace not in ("aten", "prim", "prims"):
            self.calls[f"{namespace}::{func._opname}"] += 1
        return func(*args, **(kwargs or {}))


def measure(
    run: Callable[[], Any],
    model: nn.Module,
    counted_root: nn.Module,
    input_shapes: Sequence[tuple[int, ...]],
) -> ModelCost:
    """Run ``run()`` once (no grad) and measure ``model``'s modules.

    Args:
        run: one forward pass that calls ``model`` (or a module around it) on fixed inputs.
        model: the module whose submodules are the table's rows.
        counted_root: the module ``run`` calls first (``model`` itself, or a graph that
            holds it): FlopCounterMode names modules by their path from it.
        input_shapes: the inputs' shapes, for the report.
    """
    prefix = _counter_prefix(counted_root, model)
    outputs: dict[str, list[str]] = {}
    handles = [
        module.register_forward_hook(_shape_recorder(outputs, path))
        for path, module in model.named_modules()
    ]
    counter = FlopCounterMode(display=False)
    foreign = _ForeignOps()
    try:
        with torch.no_grad(), counter, foreign:
            result = run()
    finally:
        for handle in handles:
            handle.remove()
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    total = int(counter.get_total_flops())
    if "" not in outputs:  # a graph around the model ran it part by part: the whole pass
        outputs[""] = [describe_output(result)]
        counts[prefix] = total
    flops = _module_flops(model, "", prefix, counts)
    layers = []
    for path, module in model.named_modules():
        seen = outputs.get(path, [])
        layers.append(
            LayerCost(
                path=path,
                type=type(module).__name__,
                output=seen[0] if seen else "-",
                params=sum(p.numel() for p in module.parameters()),
                flops=flops.get(path, 0),
                calls=len(seen),
            )
        )
    return ModelCost(
        input_shapes=[tuple(s) for s in input_shapes],
        layers=layers,
        flops=total,
        params=sum(p.numel() for p in model.parameters()),
        uncounted=dict(foreign.calls),
    )


def _module_flops(
    module: nn.Module, path: str, prefix: str, counts: dict[str, int]
) -> dict[str, int]:
    """Each module's FLOPs by path: FlopCounterMode's count where the module was called as
    a module, else the sum of its children's (a graph may call a module's parts directly)."""
    out: dict[str, int] = {}
    children = 0
    for name, child in module.named_children():
        child_path = f"{path}.{name}" if path else name
        out.update(_module_flops(child, child_path, prefix, counts))
        children += out[child_path]
    key = f"{prefix}.{path}" if path else prefix
    out[path] = int(counts[key]) if key in counts else children
    return out


def _counter_prefix(root: nn.Module, model: nn.Module) -> str:
    """How FlopCounterMode names ``model``: the root's class name, then the path to it."""
    if root is model:
        return type(root).__name__
    path = next((name for name, m in root.named_modules() if m is model), None)
    if path is None:
        raise ValueError(f"{type(model).__name__} is not inside {type(root).__name__}")
    return f"{type(root).__name__}.{path}"


def _shape_recorder(outputs: dict[str, list[str]], path: str) -> Callable[..., None]:
    def record(module: nn.Module, args: Any, output: Any) -> None:
        outputs.setdefault(path, []).append(describe_output(output))

    return record


def describe_output(value: Any, limit: int = 3) -> str:
    """A short text of a module's output: ``1x256x64x64``; a list of tensors as
    ``[1x256x64x64, 1x256x32x32, ... (5)]``; a dict by its keys' shapes."""
    if isinstance(value, torch.Tensor):
        return "x".join(map(str, value.shape)) or "scalar"
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        parts = [describe_output(v, limit) for v in value[:limit]]
        more = f", ... ({len(value)})" if len(value) > limit else ""
        return "[" + ", ".join(parts) + more + "]"
    return type(value).__name__


def table(cost: ModelCost, depth: int) -> str:
    """The per-module table down to ``depth`` levels below the model (``backbone`` is level
    1, ``backbone.model`` level 2, ...). Modules that hold no parameters and were not called
    are left out; ``xN`` after an output: the module ran N times (a head shared by levels)."""
    rows = [("module", "type", "output", "params", "GFLOPs")]
    for layer in cost.layers:
        level = layer.path.count(".") + 1 if layer.path else 0
        if level > depth or (layer.params == 0 and not layer.calls):
            continue
        calls = f" x{layer.calls}" if layer.calls > 1 else ""
        rows.append(
            (
                layer.path or "(model)",
                layer.type,
                layer.output + calls,
                _count(layer.params),
                _gflops(layer.flops),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    align = ("<", "<", "<", ">", ">")
    lines = ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * max(map(len, lines)))
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 10_000 else str(n)


def _gflops(flops: int) -> str:
    return f"{flops / 1e9:.3f}" if flops else "-"
