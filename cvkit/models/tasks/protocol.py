"""The task protocol: what every task model (classifier, detector, segmenter) offers.

The engine trains, evaluates, predicts and exports through these methods alone, for every
task (MMDetection's ``forward(mode="loss" | "predict")`` split into named methods, so what a
method returns never depends on the mode):

* ``loss(batch) -> dict[str, Tensor]``: the loss terms (the trainer sums them);
* ``predict(batch) -> list[Prediction]``: one prediction per image, in the image file's
  pixels (``ClsPrediction``, ``DetPrediction``, ``SegPrediction``);
* ``loss_and_predict(batch)``: both from one forward pass, for evaluation, where the
  validation loss and the metrics come from the same network outputs;
* ``task``: the name of the task entry in ``cvkit.registry.TASKS`` that batches, evaluates
  and reports for it; ``num_classes``: foreground classes.

Each method does the same in train and eval mode; only layers such as dropout and batch norm
follow the mode (a two-stage detector also keeps its train/test proposal counts).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TaskModel(Protocol):
    """A model the engine can train, evaluate and predict with (see the module docstring)."""

    task: str

    @property
    def num_classes(self) -> int: ...

    def loss(self, batch: Any) -> dict[str, torch.Tensor]: ...

    def predict(self, batch: Any) -> list[Any]: ...

    def loss_and_predict(self, batch: Any) -> tuple[dict[str, torch.Tensor], list[Any]]: ...
