"""``cvkit export``: a checkpoint as an ONNX file, an ExportedProgram (``.pt2``) or weights.

The model is wrapped as a graph with its pre- and post-processing inside
(``cvkit.models.deploy``), traced once by ``torch.export`` with symbolic height, width (and
batch, with ``dynamic_batch``), and checked against the eager model at three other input
sizes on real images before anything is written (``cvkit.engine.parity``). The file carries
what a deployment needs (``metadata_of``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvkit import __version__
from cvkit.config import Config
from cvkit.config.class_count import fill_from_classes
from cvkit.config.load import apply_overrides
from cvkit.engine.checkpoint import load_checkpoint
from cvkit.engine.deployed import METADATA_FILE, DeployedModel, load_deployed
from cvkit.engine.export_samples import check_sizes, sample_images
from cvkit.engine.parity import compare_close, compare_detections, compare_masks
from cvkit.engine.predict import export_weights
from cvkit.engine.resume import trained_config
from cvkit.engine.run import build_model, validate
from cvkit.engine.weights import inference_weights, load_model_weights
from cvkit.models.deploy import DeployGraph, deploy_graph, traceable

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2", "weights": ".pt"}
OPSET = 18  # ONNX Resize with antialias (resizing preprocessors); RoiAlign


@dataclass
class ExportResult:
    """What ``export`` wrote and what it checked (one line per check)."""

    path: Path
    checks: list[str]


def export(
    checkpoint: str | os.PathLike,
    fmt: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    dynamic_batch: bool = False,
    input_size: tuple[int, int] | None = None,
    check_metric: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` (a run's ``best.pt`` / ``last.pt`` or a weights export).

    Args:
        fmt: ``onnx``, ``exported-program`` or ``weights``; ``None``: from ``out``'s suffix
            (``.onnx``, ``.pt2``, ``.pt``), else ONNX.
        out: the file to write; default: the checkpoint's path with the format's suffix.
        overrides: dotted overrides of the config the checkpoint was trained with, for what
            can change after training (``model.score_threshold=0.3``); recorded in the file.
        dynamic_batch: the graph takes any batch size (default: one image per run).
        input_size: ``(h, w)`` to trace at (default: the model's fixed padded size, else the
            first validation image's); the graph takes other sizes all the same.
        check_metric: also evaluate both models on the config's validation data and require
            the metric to agree (detection AP and segmentation mIoU within 0.001).

    Raises:
        ParityError: the export differs from the eager model; nothing is written.
    """
    fmt = _format(fmt, out)
    path = Path(out) if out else Path(checkpoint).with_suffix(FORMATS[fmt])
    if fmt == "weights":
        config = None
        if overrides:
            config = _config(checkpoint, load_checkpoint(checkpoint), overrides).to_yaml()
        return ExportResult(export_weights(checkpoint, path, config), [])
    model, cfg, state = trained_model(checkpoint, overrides)
    graph = deploy_graph(model)
    samples = sample_images(cfg, graph)
    traced = input_size or _default_size(graph, samples)
    _check_size(traced, graph.min_side(), graph.max_side())
    sizes = check_sizes(traced, graph.min_side(), graph.max_side())
    meta = metadata_of(graph, cfg, state, fmt, dynamic_batch, traced)
    meta["overrides"] = list(overrides)
    temp = path.with_name(f".{path.stem}.partial{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        run = _write(traceable(graph), fmt, temp, meta, samples[0], traced, dynamic_batch)
        checks = check_parity(graph, run, samples, sizes, dynamic_batch)
        if check_metric:
            from cvkit.engine.evaluate_checkpoint import compare_on_data

            checks += compare_on_data(cfg, model, load_deployed(temp))
        os.replace(temp, path)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) == temp:
            # the user asked for path: the hidden partial file is ours, not theirs to find
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        temp.unlink(missing_ok=True)
    return ExportResult(path, checks)


def _format(fmt: str | None, out: str | os.PathLike | None) -> str:
    if fmt is None:
        suffix = Path(out).suffix.lower() if out else ""
        return next((f for f, s in FORMATS.items() if s == suffix), "onnx")
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def trained_model(
    checkpoint: str | os.PathLike, overrides: Sequence[str] = ()
) -> tuple[torch.nn.Module, Config, dict]:
    """The checkpoint's model (eval mode, its weights) and the config it was trained with,
    ``overrides`` applied."""
    state = load_checkpoint(checkpoint)
    cfg = _config(checkpoint, state, overrides)
    fill_from_classes(cfg, list(state.get("classes") or []), f"checkpoint {str(checkpoint)!r}")
    model = build_model(validate(cfg), cfg, pretrained=False)
    load_model_weights(model, inference_weights(state), Path(checkpoint))
    return model.eval(), cfg, state


def _config(checkpoint: str | os.PathLike, state: dict, overrides: Sequence[str]) -> Config:
    cfg = trained_config(Path(checkpoint), state)
    apply_overrides(cfg, overrides)
    return cfg


def _default_size(graph: DeployGraph, samples: list[np.ndarray]) -> tuple[int, int]:
    side = graph.max_side()
    if side is not None:
        return side, side
    return int(samples[0].shape[0]), int(samples[0].shape[1])


def _check_size(size: tuple[int, int], min_side: int, max_side: int | None) -> None:
    if min(size) < min_side or (max_side is not None and max(size) > max_side):
        raise ValueError(
            f"--input-size {size[0]} {size[1]} is outside what the model takes: {min_side} to "
            f"{max_side or 'any'} pixels a side"
            + (" (its preprocessor pads to pad_to)" if max_side else "")
        )


def metadata_of(
    graph: DeployGraph,
    cfg: Config,
    state: dict[str, Any],
    fmt: str,
    dynamic_batch: bool,
    traced: tuple[int, int],
) -> dict[str, Any]:
    """What a deployment of the graph needs, stored in the file: class names, dataset
    category ids, inputs and outputs, the input range, the ``data.val`` transforms, and the
    cvkit version."""
    classes = list(state.get("classes") or [])
    num_classes = int(getattr(graph.model, "num_classes", 0))
    classes = classes or [str(i) for i in range(num_classes)]
    val = cfg.get("data.val") or {}
    meta = {
        "cvkit_version": __version__,
        "format": fmt,
        "task": graph.task,
        "model_type": cfg.get("model.type"),
        "classes": classes,
        "cat_ids": list(state.get("cat_ids") or range(1, len(classes) + 1)),
        "input_names": list(graph.input_names),
        "output_names": list(graph.output_names),
        "channels": int(graph.preprocessor.mean.shape[1]),
        "min_size": graph.min_side(),
        "max_size": graph.max_side(),
        "batch": "dynamic" if dynamic_batch else "static",
        "traced_size": list(traced),
        "val_transforms": val.get("transforms", []) if isinstance(val, dict) else [],
    }
    if graph.task == "segmentation":
        meta["ignore_index"] = int(getattr(graph.model, "ignore_index", 255))
    return meta


Runner = Callable[[tuple[torch.Tensor, ...]], list[np.ndarray]]


def _write(
    graph: DeployGraph,
    fmt: str,
    path: Path,
    meta: dict[str, Any],
    sample: np.ndarray,
    traced: tuple[int, int],
    dynamic_batch: bool,
) -> Runner:
    """Trace the graph, write it to ``path`` with ``meta``; returns a runner of the traced
    graph that gives the final and the raw outputs (for the parity check)."""
    images = _resized(sample, traced, 2 if dynamic_batch else 1)
    inputs = graph.inputs_for(images, tuple(sample.shape[:2]))
    shapes = _dynamic_shapes(graph, traced, dynamic_batch)
    with _quiet():
        if fmt == "onnx":
            return _write_onnx(graph, inputs, shapes, path, meta)
        program = torch.export.export(graph, inputs, dynamic_shapes=shapes)
    # the program also returns the raw outputs, after the named ones: they cost no copy
    torch.export.save(program, str(path), extra_files={METADATA_FILE: json.dumps(meta)})
    module = program.module()
    return lambda args: [t.detach().numpy() for t in module(*args)]


def _write_onnx(graph, inputs, shapes, path: Path, meta: dict[str, Any]) -> Runner:
    import onnx
    import onnx.utils
    import onnxruntime as ort

    names = list(graph.output_names + graph.raw_names)
    program = torch.onnx.export(
        graph,
        inputs,
        dynamic_shapes=shapes,
        input_names=list(graph.input_names),
        output_names=names,
        dynamo=True,
        opset_version=OPSET,
        verbose=False,
    )
    if program is None:  # only when torch.onnx.export writes to a file itself
        raise RuntimeError("torch.onnx.export returned no program")
    full = program.model_proto
    session = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    # the deployed file: the named outputs only (the raw ones were for the parity check)
    deployed = onnx.utils.Extractor(full).extract_model(
        list(graph.input_names), list(graph.output_names)
    )
    for key, value in meta.items():
        deployed.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(deployed, str(path))

    def run(args: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
        return session.run(None, {n: a.numpy() for n, a in zip(graph.input_names, args)})

    return run


def _dynamic_shapes(graph: DeployGraph, traced: tuple[int, int], dynamic_batch: bool):
    """Symbolic height and width (and batch) of ``images``; the batch of the inputs that
    follow it (``orig_sizes``) is the same."""
    Dim = torch.export.Dim
    low, top = graph.min_side(), graph.max_side()
    height = Dim("height", min=low, max=top) if top else Dim("height", min=low)
    width = Dim("width", min=low, max=top) if top else Dim("width", min=low)
    batch = Dim("batch", min=1, max=1024) if dynamic_batch else None
    images = {2: height, 3: width} | ({0: batch} if batch else {})
    shapes: dict[str, Any] = {"images": images}
    for name in graph.input_names[1:]:
        shapes[name] = {0: batch} if batch and name == "orig_sizes" else None
    return shapes


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines, warnings and log records stay out of cvkit's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _resized(image: np.ndarray, size: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """``image`` (``[h, w, C]`` uint8) resized to ``size`` ``(h, w)``, as ``Tensor[batch,
    C, h, w]``."""
    import cv2

    if tuple(image.shape[:2]) != tuple(size):
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return x.expand(batch, -1, -1, -1).contiguous()


def check_parity(
    graph: DeployGraph,
    run: Runner,
    samples: list[np.ndarray],
    sizes: list[tuple[int, int]],
    dynamic_batch: bool,
) -> list[str]:
    """Compare the traced graph with the eager model on every sample at every size (and a
    batch of two with ``dynamic_batch``); returns one line per size."""
    lines = []
    n = len(graph.output_names)
    for size in sizes:
        notes: list[str] = []
        batches = [(_resized(s, size), s.shape[:2]) for s in samples]
        if dynamic_batch and len(samples) > 1 and size == sizes[0]:
            pair = torch.cat([_resized(s, size) for s in samples[:2]])
            batches.append((pair, samples[0].shape[:2]))
        for images, file_size in batches:
            inputs = graph.inputs_for(images, (int(file_size[0]), int(file_size[1])))
            where = f"{size[0]}x{size[1]} (batch of {len(images)})"
            exported = run(inputs)
            with torch.no_grad():
                raw, final = graph.eager_raw(images), graph.eager_outputs(*inputs)
            for name, e, x in zip(graph.raw_names, raw, exported[n:]):
                notes.append(compare_close(name, e.numpy(), x, where))
            notes.append(_compare_final(graph, [t.numpy() for t in final], exported[:n], where))
        lines.append(f"{size[0]}x{size[1]}: " + "; ".join(dict.fromkeys(_worst(notes))))
    return lines


def _compare_final(graph: DeployGraph, eager: list[np.ndarray], exported, where: str) -> str:
    if graph.task == "detection":
        threshold = float(getattr(graph, "score_threshold", 0.0))
        return compare_detections(eager, exported, where, threshold)
    if graph.task == "segmentation":
        return compare_masks(eager[0], exported[0], where)
    return compare_close(graph.output_names[0], eager[0], exported[0], where)


def _worst(notes: list[str]) -> list[str]:
    """One note per output name, the last (notes of one output repeat per sample)."""
    by_name: dict[str, str] = {}
    for note in notes:
        by_name[note.split(":", 1)[0]] = note
    return list(by_name.values())


__all__ = ["FORMATS", "DeployedModel", "ExportResult", "check_parity", "export", "metadata_of"]
