"""The evaluation loop, one for every task: run a model over a loader and score it.

The model gives losses and predictions from one forward pass (``loss_and_predict``, the task
protocol of :mod:`cvkit.models.tasks.protocol`); the task's evaluator (``process`` then
``compute``) turns predictions into metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvkit.models.tasks.protocol import TaskModel


@dataclass
class Evaluation:
    """What one pass over the evaluation data gives.

    Attributes:
        metrics: the evaluator's metrics plus ``val_loss`` (the summed loss terms, averaged
            over images).
        evaluator: the task's evaluator after ``compute`` (tables, per-class numbers).
        first: the first batch (on the CPU) and its predictions, for pictures; ``None``
            unless asked for.
    """

    metrics: dict[str, float]
    evaluator: Any
    first: tuple[Any, list[Any]] | None = None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    evaluator: Any,
    keep_first: bool = False,
) -> Evaluation:
    """Score ``model`` on every batch of ``loader`` (in the loader's fixed order).

    Args:
        evaluator: has ``process(batch, predictions)`` and ``compute() -> dict[str, float]``.
        keep_first: keep the first batch and its predictions in ``Evaluation.first``.

    Raises:
        ValueError: the loader yields no batch.
    """
    loss_sum, count, first = 0.0, 0, None
    loader.sampler.set_epoch(0)  # type: ignore[attr-defined]
    for batch in loader:
        batch = batch.to(device)
        losses, predictions = cast(TaskModel, model).loss_and_predict(batch)
        loss_sum += float(sum(losses.values())) * len(batch)
        count += len(batch)
        evaluator.process(batch, predictions)
        if keep_first and first is None:
            first = (batch.to(torch.device("cpu")), predictions)
    if count == 0:
        raise ValueError("the evaluation data are empty")
    return Evaluation({**evaluator.compute(), "val_loss": loss_sum / count}, evaluator, first)
