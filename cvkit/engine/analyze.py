"""``cvkit analyze``: a model's per-module output shapes, parameters and FLOPs.

The model runs as its deploy graph (``cvkit.models.deploy``): uint8 images in, final
predictions out, so the figures include the pre- and post-processing a user runs, and a
detector's NMS shows up among the operators that FlopCounterMode cannot count
(``cvkit.models.cost``). With ``input_size`` nothing is read but the config (and the
checkpoint); without it the inputs are images of ``data.val`` after its transforms, and
a detector's cost is reported as the mean and spread over them.
"""

from __future__ import annotations

import os
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvkit.config import Config
from cvkit.config.class_count import auto_class_keys, fill_from_classes
from cvkit.data.items import item_image, spread_items
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.run import build_datasets, build_model, validate
from cvkit.engine.weights import inference_weights, load_model_weights
from cvkit.errors import ConfigError
from cvkit.models.cost import ModelCost, measure, table
from cvkit.models.deploy import DeployGraph, deploy_graph

UNIT_NOTE = (
    "FLOPs = 2 x multiply-adds (MACs), counted by torch.utils.flop_counter.FlopCounterMode: "
    "convolutions and matrix products; element-wise ops, pooling, normalisation and resizing "
    "are not counted, as in torchvision's and fvcore's GMACs"
)


@dataclass
class Analysis:
    """The cost of one forward pass per distinct size the network sees.

    ``costs[i]`` is the pass at ``sizes[i]`` (height, width, after the model's padding or
    resizing), measured on an input image of ``first_inputs[i]``; ``images[i]`` counts the
    images analysed that the network saw at that size, and ``input_sizes`` holds every
    image's own size.
    """

    model_type: str
    task: str
    source: str  # where the inputs came from: "--input-size 224 224", "8 images of data.val"
    costs: list[ModelCost]
    sizes: list[tuple[int, int]]
    first_inputs: list[tuple[int, int]]
    images: list[int]
    input_sizes: list[tuple[int, int]]
    trainable: int
    notes: list[str] = field(default_factory=list)

    def flops_per_image(self) -> list[int]:
        """Each analysed image's FLOPs (a size measured once counts for all its images)."""
        return [c.flops for c, n in zip(self.costs, self.images) for _ in range(n)]


def analyze(
    cfg: Config,
    checkpoint: str | os.PathLike | None = None,
    input_size: tuple[int, int] | None = None,
    num_images: int = 8,
) -> Analysis:
    """Measure the config's model (with the checkpoint's weights and classes, if given).

    Args:
        input_size: ``(h, w)`` of one input image; ``None``: up to ``num_images`` images of
            ``data.val``, spread evenly over it, after its transforms.

    Raises:
        ConfigError: ``num_classes: auto`` with nothing to count the classes from, or no
            ``data.val`` and no ``input_size``.
        ValueError: ``input_size`` outside what the model takes.
    """
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    settings = validate(cfg)
    dataset = None
    if state is not None:
        fill_from_classes(cfg, list(state.get("classes") or []), f"checkpoint {str(checkpoint)!r}")
    elif input_size is None:
        dataset = _val_dataset(settings, cfg)
        fill_from_classes(cfg, list(getattr(dataset, "classes", None) or []), "data.val")
    elif keys := auto_class_keys(cfg):
        raise ConfigError(
            f"{keys[0]} is auto, and with --input-size no data is read to count the classes",
            where=keys[0],
            hints=[f"set {keys[0]}=N on the command line", "or give --checkpoint"],
        )
    settings = validate(cfg)
    model = build_model(settings, cfg, pretrained=False)  # the weights do not change the cost
    if state is not None:
        load_model_weights(model, inference_weights(state), Path(str(checkpoint)))
    model.eval()
    graph = _graph(model)
    if input_size is not None:
        _check_size(graph, input_size)
        inputs = [torch.zeros(1, 3, *input_size, dtype=torch.uint8)]
        source = f"--input-size {input_size[0]} {input_size[1]}"
    else:
        inputs = _data_images(dataset, num_images)
        source = f"{len(inputs)} image{'s' * (len(inputs) > 1)} of data.val"
    analysis = _measure_all(model, graph, inputs, cfg, source)
    side = getattr(getattr(model, "preprocessor", None), "input_size", None)
    if side is not None:
        analysis.notes.append(
            f"the model resizes every image to {side}x{side} (model.preprocessor.input_size)"
        )
    if graph is None:
        analysis.notes.append(
            f"{type(model).__name__} has no deploy graph: measured its forward(), without "
            "post-processing"
        )
    return analysis


def _val_dataset(settings: Any, cfg: Config) -> Any:
    if settings.data.val is None:
        raise ConfigError(
            "the config has no data.val to take images from",
            where="data.val",
            hints=["give --input-size H W to measure one input size without data"],
        )
    return build_datasets(settings, cfg, ("val",))["val"]


def _graph(model: nn.Module) -> DeployGraph | None:
    try:
        return deploy_graph(model)
    except ValueError:  # a plugin's model without a deploy graph: its forward is measured
        return None


def _check_size(graph: DeployGraph | None, size: tuple[int, int]) -> None:
    if graph is None:
        return
    low, high = graph.min_side(), graph.max_side()
    if min(size) < low or (high is not None and max(size) > high):
        raise ValueError(
            f"--input-size {size[0]} {size[1]} is outside what the model takes: {low} to "
            f"{high or 'any'} pixels a side"
            + (" (its preprocessor pads to pad_to)" if high else "")
        )


def _data_images(dataset: Any, count: int) -> list[torch.Tensor]:
    """Up to ``count`` images of ``dataset``, evenly spread: ``Tensor[1, 3, H, W]`` uint8."""
    if len(dataset) == 0:
        raise ValueError("data.val has no images; give --input-size H W instead")
    images = []
    for item in spread_items(dataset, count):
        image = np.ascontiguousarray(item_image(item))
        images.append(torch.from_numpy(image).permute(2, 0, 1)[None])
    return images


def _measure_all(
    model: nn.Module,
    graph: DeployGraph | None,
    inputs: list[torch.Tensor],
    cfg: Config,
    source: str,
) -> Analysis:
    """Measure each distinct size the model sees once: after padding or resizing, a graph's
    work depends only on its input's shape (a two-stage graph pads its proposals to a fixed
    count)."""
    measured: dict[tuple[int, ...], int] = {}
    costs: list[ModelCost] = []
    sizes: list[tuple[int, int]] = []
    firsts: list[tuple[int, int]] = []
    counts: list[int] = []
    for images in inputs:
        key = _seen_shape(model, graph, images)
        if key in measured:
            counts[measured[key]] += 1
            continue
        measured[key] = len(costs)
        costs.append(_measure_one(model, graph, images))
        sizes.append((int(key[-2]), int(key[-1])))
        firsts.append(_size(images))
        counts.append(1)
    return Analysis(
        model_type=str(cfg.get("model.type")),
        task=graph.task if graph is not None else str(getattr(model, "task", "")),
        source=source,
        costs=costs,
        sizes=sizes,
        first_inputs=firsts,
        images=counts,
        input_sizes=[_size(images) for images in inputs],
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


def _size(images: torch.Tensor) -> tuple[int, int]:
    return int(images.shape[-2]), int(images.shape[-1])


def _seen_shape(
    model: nn.Module, graph: DeployGraph | None, images: torch.Tensor
) -> tuple[int, ...]:
    if graph is None:
        return tuple(images.shape)
    with torch.no_grad():
        return tuple(graph.preprocessor.graph_forward(images).shape)


def _measure_one(model: nn.Module, graph: DeployGraph | None, images: torch.Tensor) -> ModelCost:
    if graph is None:
        return measure(lambda: model(images), model, model, [tuple(images.shape)])
    inputs = graph.inputs_for(images)
    return measure(lambda: graph(*inputs), model, graph, [tuple(t.shape) for t in inputs])


def render(analysis: Analysis, depth: int) -> str:
    """The table of the first size measured, the totals, the units, what was not counted,
    and (for several images) the spread."""
    first = analysis.costs[0]
    (h, w), seen = analysis.first_inputs[0], analysis.sizes[0]
    which = ", the first" if len(analysis.input_sizes) > 1 else ""
    lines = [
        f"{analysis.model_type} ({analysis.task}), input 1x3x{h}x{w} uint8 "
        f"({analysis.source}{which})"
        + (
            f", {seen[0]}x{seen[1]} after the model's padding or resizing" if seen != (h, w) else ""
        ),
        "",
        table(first, depth),
        "",
        f"parameters: {first.params:,} ({analysis.trainable:,} trainable)",
        f"FLOPs: {first.flops / 1e9:.3f} G = {first.macs / 1e9:.3f} GMACs",
        *textwrap.wrap(f"({UNIT_NOTE})", 100, initial_indent="  ", subsequent_indent="   "),
    ]
    uncounted = ", ".join(f"{op} x{n}" for op, n in sorted(first.uncounted.items()))
    lines.append(f"not counted: {uncounted or 'no other operators ran'}")
    per_image = analysis.flops_per_image()
    if len(per_image) > 1:
        g = [f / 1e9 for f in per_image]
        spread = statistics.pstdev(g)
        heights = [s[0] for s in analysis.input_sizes]
        widths = [s[1] for s in analysis.input_sizes]
        distinct = len(analysis.costs)
        lines.append(
            f"over {analysis.source} (heights {_span(heights)}, widths {_span(widths)}; "
            f"{distinct} size{'s' * (distinct > 1)} after the "
            f"model's padding or resizing): {statistics.mean(g):.3f} GFLOPs mean, {spread:.3f} "
            f"std, {min(g):.3f} min, {max(g):.3f} max"
        )
    lines += [f"note: {note}" for note in analysis.notes]
    return "\n".join(lines)


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def to_json(analysis: Analysis) -> dict[str, Any]:
    """The analysis as plain data (``cvkit analyze --json``)."""
    per_image = analysis.flops_per_image()
    return {
        "model_type": analysis.model_type,
        "task": analysis.task,
        "source": analysis.source,
        "unit": UNIT_NOTE,
        "params": analysis.costs[0].params,
        "trainable_params": analysis.trainable,
        "flops_mean": statistics.mean(per_image),
        "flops_std": statistics.pstdev(per_image),
        "sizes": [
            {
                "height": s[0],
                "width": s[1],
                "measured_on": list(first),
                "images": n,
                "flops": c.flops,
                "macs": c.macs,
                "uncounted": c.uncounted,
                "layers": [vars(layer) for layer in c.layers],
            }
            for s, first, n, c in zip(
                analysis.sizes, analysis.first_inputs, analysis.images, analysis.costs
            )
        ],
        "notes": analysis.notes,
    }
