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

from cvkit.engine import distributed
from cvkit.models.tasks.protocol import TaskModel


@dataclass
class Evaluation:
    """What one pass over the evaluation data gives.

    Attributes:
        metrics: the evaluator's metrics plus ``val_loss`` (the summed loss terms, averaged
            over images; absent for a model without losses: an exported one).
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

    In a distributed run each process scores its shard (the loader's sampler gives every
    sample to one process) and the evaluators' states are gathered on rank 0, which computes
    the metrics and shares them: every process returns the same metrics, equal to one
    process's over the whole data. Rank 0's ``evaluator`` holds all the data, the others'
    their shard.

    Args:
        evaluator: has ``process(batch, predictions)`` and ``compute() -> dict[str, float]``;
            for a distributed run also ``state()`` and ``merge(states)``.
        keep_first: keep the first batch and its predictions in ``Evaluation.first``.

    Raises:
        ValueError: the loader yields no batch (on any process, for all of them).
    """
    loss_sum, count, first = 0.0, 0, None
    has_loss = False  # an exported model (engine.deployed) predicts without losses
    loader.sampler.set_epoch(0)  # type: ignore[attr-defined]
    for batch in loader:
        batch = batch.to(device)
        losses, predictions = cast(TaskModel, model).loss_and_predict(batch)
        has_loss = has_loss or bool(losses)
        loss_sum += float(sum(losses.values())) * len(batch)
        count += len(batch)
        evaluator.process(batch, predictions)
        if keep_first and first is None:
            first = (batch.to(torch.device("cpu")), predictions)
    processes = distributed.current()
    if processes.distributed:
        metrics = _gathered(evaluator, loss_sum, count, processes)
    elif count == 0:
        raise ValueError("the evaluation data are empty")
    else:
        metrics = {**evaluator.compute(), "val_loss": loss_sum / count}
    if not has_loss:
        metrics.pop("val_loss", None)
    return Evaluation(metrics, evaluator, first)


def _gathered(
    evaluator: Any, loss_sum: float, count: int, processes: distributed.Processes
) -> dict[str, float]:
    """Every process's evaluator state and loss on rank 0, which computes the metrics;
    they are then shared with all processes (an error too, so no process waits alone)."""
    for name in ("state", "merge"):
        if not callable(getattr(evaluator, name, None)):
            raise TypeError(
                f"{type(evaluator).__name__} cannot evaluate over several processes: it has "
                "no state() and merge(states) to gather the processes' results on rank 0"
            )
    parts = distributed.gather((evaluator.state(), loss_sum, count), processes)
    outcome: tuple[dict[str, float] | None, str | None] = (None, None)
    if parts is not None:  # rank 0
        total = sum(part[2] for part in parts)
        try:
            if total == 0:
                raise ValueError("the evaluation data are empty")
            evaluator.merge([part[0] for part in parts[1:]])
            loss = sum(part[1] for part in parts) / total
            outcome = ({**evaluator.compute(), "val_loss": loss}, None)
        except ValueError as exc:
            outcome = (None, str(exc))
    metrics, error = distributed.broadcast(outcome, processes)
    if error is not None:
        raise ValueError(error)
    return metrics
