"""The evaluation loop, one for every task: run a model over a loader and score it.

The model gives losses and predictions from one forward pass (``loss_and_predict``, the task
protocol of :mod:`cvkit.models.tasks.protocol`); the task's evaluator (``process`` then
``compute``) turns predictions into metrics.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvkit.engine import distributed
from cvkit.models.tasks.protocol import TaskModel

logger = logging.getLogger("cvkit.engine")
_split_warned = False  # the warning is said once a process


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
        losses, predictions = loss_and_predict(cast(TaskModel, model), batch)
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


def loss_and_predict(model: TaskModel, batch: Any) -> tuple[dict[str, Any], list[Any]]:
    """``model.loss_and_predict(batch)``; a batch that runs out of memory is split in two
    halves (of the same padded size, so each image's prediction is the same) and retried,
    down to single images. The losses are then the halves' size-weighted mean: close to the
    whole batch's, not equal where a loss is normalised over the batch (a detector's
    positive anchors)."""
    try:
        return model.loss_and_predict(batch)
    except torch.OutOfMemoryError:
        if len(batch) < 2:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    global _split_warned
    if not _split_warned:
        _split_warned = True
        logger.warning(
            "evaluation ran out of memory on a batch of %d; splitting batches that do not fit "
            "(the predictions are the same; data.val_batch_size sets a smaller batch)",
            len(batch),
        )
    halves = split_batch(batch)
    parts = [loss_and_predict(model, half) for half in halves]
    sizes = [len(half) for half in halves]
    losses = {
        key: sum(part[0][key] * n for part, n in zip(parts, sizes)) / len(batch)
        for key in parts[0][0]
    }
    return losses, [p for part in parts for p in part[1]]


def split_batch(batch: Any) -> list[Any]:
    """A batch dataclass (``ClsBatch``, ``DetBatch``, ``SegBatch``) as two halves: every
    field with one entry per image (a tensor's first dimension, a list) split, the rest
    shared."""
    size = len(batch)
    cut = size // 2
    halves = []
    for lo, hi in ((0, cut), (cut, size)):
        changes = {}
        for f in dataclasses.fields(batch):
            value = getattr(batch, f.name)
            per_image = isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == size
            if per_image or (isinstance(value, list) and len(value) == size):
                changes[f.name] = value[lo:hi]
        halves.append(dataclasses.replace(batch, **changes))
    return halves


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
