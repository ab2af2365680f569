"""Exported models as the engine sees them: load an ``.onnx`` (onnxruntime) or ``.pt2``
(``torch.export``) file with its metadata, and predict and evaluate through it.

A ``DeployedModel`` follows the task protocol (``predict``, ``loss_and_predict``; no loss),
so ``cvkit predict`` and ``cvkit eval`` run it through the same task entries as a
checkpoint; only the forward pass differs. Nothing here builds a cvkit model: a deployed
file needs its metadata alone (class names, category ids, input range, the ``data.val``
transforms it was trained with).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SUFFIXES = {".onnx": "onnx", ".pt2": "exported-program"}
METADATA_FILE = "cvkit_metadata.json"  # inside a .pt2 archive (torch.export.save extra_files)


def is_deployed(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names an exported model (by its suffix)."""
    return path is not None and Path(path).suffix.lower() in SUFFIXES


@dataclass
class DeployedModel:
    """An exported graph and its metadata (see ``cvkit.engine.export.metadata_of``).

    Call it with the graph's inputs as arrays (``model(images=..., orig_sizes=...)``) for a
    dict of its outputs; ``predict(batch)`` gives the task's predictions, like a model's.
    """

    path: Path
    metadata: dict[str, Any]
    runner: Callable[[dict[str, np.ndarray]], list[np.ndarray]]

    @property
    def task(self) -> str:
        return str(self.metadata["task"])

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def ignore_index(self) -> int | None:
        return self.metadata.get("ignore_index")

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self._check(inputs)
        outputs = self.runner(inputs)
        return dict(zip(self.metadata["output_names"], outputs))

    def predict(self, batch: Any) -> list[Any]:
        from cvkit.engine.tasks import task_of

        return task_of(self).predict_deployed(self, batch)  # type: ignore[arg-type]

    def loss_and_predict(self, batch: Any) -> tuple[dict[str, torch.Tensor], list[Any]]:
        """No loss terms (an exported graph has no loss) and the predictions."""
        return {}, self.predict(batch)

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        raise ValueError(f"'{self.path}' is an exported model: it predicts but has no loss")

    def _check(self, inputs: dict[str, np.ndarray]) -> None:
        meta = self.metadata
        missing = [n for n in meta["input_names"] if n not in inputs]
        if missing:
            raise ValueError(f"'{self.path}' needs the inputs {missing}")
        images = inputs["images"]
        if images.ndim != 4 or images.shape[1] != meta["channels"]:
            raise ValueError(
                f"'{self.path}' takes images [B, {meta['channels']}, H, W]; got "
                f"{list(images.shape)}"
            )
        if meta["batch"] == "static" and images.shape[0] != 1:
            raise ValueError(
                f"'{self.path}' was exported for one image at a time; got a batch of "
                f"{images.shape[0]} (export with --dynamic-batch for batches)"
            )
        low, high = meta["min_size"], meta["max_size"]
        h, w = images.shape[-2:]
        if min(h, w) < low or (high is not None and max(h, w) > high):
            raise ValueError(
                f"'{self.path}' takes images of {low} to {high or 'any'} pixels a side; got "
                f"{h}x{w} (resize it as the config's data.val transforms do)"
            )


def load_deployed(path: str | os.PathLike, threads: int | None = None) -> DeployedModel:
    """Load an ``.onnx`` or ``.pt2`` file that ``cvkit export`` wrote.

    Args:
        threads: CPU threads of onnxruntime (``None``: its default, every core).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an exported model, or one without cvkit's metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at '{path}'")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind == "onnx":
        return _load_onnx(path, threads)
    if kind == "exported-program":
        return _load_exported_program(path)
    raise ValueError(
        f"'{path}' is not an exported model: cvkit reads .onnx and .pt2 files from `cvkit export`"
    )


def _load_onnx(path: Path, threads: int | None) -> DeployedModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError(
            f"running '{path}' needs onnxruntime: pip install 'cvkit[export]'"
        ) from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            str(path), options, providers=_providers(ort.get_available_providers())
        )
    except Exception as exc:  # onnxruntime raises its own types for unreadable files
        raise ValueError(f"'{path}' is not a readable ONNX model: {exc}") from None
    props = session.get_modelmeta().custom_metadata_map
    metadata = _decoded(props, path)

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, {k: inputs[k] for k in metadata["input_names"]})

    return DeployedModel(path, metadata, run)


def _providers(available: Sequence[str]) -> list[str]:
    """CUDA when this onnxruntime has it, and the CPU always."""
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _load_exported_program(path: Path) -> DeployedModel:
    extra = {METADATA_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # a zip that is not an ExportedProgram, or a cut-short file
        raise ValueError(f"'{path}' is not a readable ExportedProgram: {exc}") from None
    if not extra[METADATA_FILE]:
        raise ValueError(f"'{path}' has no cvkit metadata; export it with `cvkit export`")
    metadata = json.loads(extra[METADATA_FILE])
    module = program.module()

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[k])) for k in metadata["input_names"]]
        with torch.no_grad():
            return [t.numpy() for t in module(*args)]

    return DeployedModel(path, metadata, run)


def _decoded(props: dict[str, str], path: Path) -> dict[str, Any]:
    """ONNX metadata (every value JSON text) as data."""
    if "cvkit_version" not in props:
        raise ValueError(f"'{path}' has no cvkit metadata; export it with `cvkit export`")
    return {key: json.loads(value) for key, value in props.items()}
