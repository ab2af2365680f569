"""The task table: what the engine does differently for each kind of model.

A task model (classifier, detector, segmenter; see :mod:`cvkit.models.tasks.protocol`) says
which task it is with its ``task`` attribute. The engine looks that name up in the ``TASKS``
registry and asks the entry for the batching, the evaluator, the report and the prediction on
image files; nothing else in the engine branches on the task. A plugin adds a task by
registering a ``Task`` subclass under the name its models give::

    @TASKS.register("keypoints")
    class KeypointTask(Task):
        default_metric = "AP"
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvkit.engine.evaluate import Evaluation, evaluate
from cvkit.errors import ConfigError
from cvkit.registry import TASKS


@dataclass
class PredictRequest:
    """What prediction on image files needs besides the model.

    Attributes:
        classes: the class names, by label.
        cat_ids: the dataset's category id of each label (detection results files).
        pipeline: ``pipeline(skip)`` -> the ``data.val`` transforms for an image alone,
            without the transform types in ``skip``, or ``None`` when there are none.
        out_dir: where to write files (pictures, masks, results); ``None`` writes nothing.
        topk: classes listed per image (classification; ``None``: 5); detections kept per
            image, the best (detection; ``None``: all the model gives).
        score_threshold: detection: detections scoring below it are left out of everything
            (records, results file, drawn images); 0 keeps all the model gives (it has its
            own ``score_threshold``).
        draw_threshold: detection: the drawn images also leave out detections scoring below
            it, so a picture is not buried under boxes of low scores.
        batch_size: images per forward pass at most; only images the network sees at one
            padded size share a batch, so every prediction is what the image gives alone
            (an exported graph that takes one image a run gets them one by one).
        workers: DataLoader workers that decode the files beside the model; ``None``: 1
            when there are several files and more than one core, else 0.
    """

    classes: list[str]
    cat_ids: list[int]
    pipeline: Callable[[tuple[str, ...]], Any]
    out_dir: Path | None = None
    topk: int | None = None
    score_threshold: float = 0.0
    draw_threshold: float = 0.3
    batch_size: int = 1
    workers: int | None = None


class Task:
    """One task's entry in the task table. Subclasses fill in every method."""

    name: str = ""
    default_metric: ClassVar[str] = ""

    def collate(self, model: nn.Module) -> Callable[[Sequence[Any]], Any]:
        """The function that batches this task's dataset items for ``model``."""
        raise NotImplementedError

    def evaluator(self, model: nn.Module, dataset: Any) -> Any:
        """A fresh evaluator (``process(batch, predictions)``, ``compute()``) for ``dataset``."""
        raise NotImplementedError

    def report(
        self, evaluation: Evaluation, classes: Sequence[str], out_dir: Path
    ) -> tuple[dict[str, Any], str]:
        """Write the final report into ``out_dir``; returns ``(report, text to print)``."""
        raise NotImplementedError

    def predict_images(
        self, model: nn.Module, images: Sequence[str], request: PredictRequest
    ) -> list[dict[str, Any]]:
        """Predict on image files; one JSON-able record per image."""
        raise NotImplementedError

    def predict_deployed(self, model: Any, batch: Any) -> list[Any]:
        """Predictions for ``batch`` from an exported model (``engine.deployed.
        DeployedModel``): the same kind, in the same pixels, as the model's ``predict``."""
        raise ValueError(f"the {self.name!r} task cannot run an exported model")

    def evaluate(
        self,
        model: nn.Module,
        loader: DataLoader,
        device: torch.device,
        dataset: Any,
        keep_first: bool = False,
    ) -> Evaluation:
        """One evaluation pass of ``model`` over ``loader`` (whose data are ``dataset``)."""
        return evaluate(model, loader, device, self.evaluator(model, dataset), keep_first)


def task_of(model: nn.Module) -> Task:
    """The task entry for ``model`` (its ``task`` attribute; ``"classification"`` if absent).

    Raises:
        ConfigError: no entry is registered under the model's task name, or the model lacks
            a method of the task protocol (:mod:`cvkit.models.tasks.protocol`).
    """
    name = getattr(model, "task", "classification")
    if not isinstance(name, str) or name not in TASKS:
        known = ", ".join(TASKS.names())
        raise ConfigError(
            f"{type(model).__name__} is a {name!r} model, and no task of that name is "
            f"registered (tasks: {known})",
            where="model.type",
            hints=[
                "a plugin that adds a task registers its entry: "
                f"@TASKS.register({name!r}) class MyTask(cvkit.engine.tasks.Task)",
                "`cvkit list tasks` shows the registered tasks",
            ],
        )
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(model, m, None))]
    if missing:
        raise ConfigError(
            f"{type(model).__name__} has no {', '.join(missing)}; the engine trains, "
            "evaluates and predicts through loss(batch), predict(batch) and "
            "loss_and_predict(batch) (both from one forward pass)",
            where="model.type",
            hints=["see cvkit.models.tasks.protocol for what each method returns"],
        )
    task = TASKS.get(name)()
    task.name = name
    return task


PROTOCOL_METHODS = ("loss", "predict", "loss_and_predict")
