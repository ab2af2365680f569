"""The classification task: image + label batches, top-k accuracy, per-class tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from cvkit.data.collate import collate_classification
from cvkit.engine.evaluate import Evaluation
from cvkit.engine.tasks.base import PredictRequest, Task
from cvkit.engine.tasks.file_batches import request_batches
from cvkit.evaluation.classification import ClassificationEvaluator
from cvkit.evaluation.reports import classification_report
from cvkit.models.tasks.protocol import TaskModel
from cvkit.registry import TASKS
from cvkit.structures import ClsBatch, ClsPrediction


@TASKS.register("classification")
class ClassificationTask(Task):
    """Classifiers: ``ClsBatch``, ``ClassificationEvaluator``, top-k classes per image."""

    default_metric = "top1"

    def collate(self, model: nn.Module) -> Callable[[Sequence[Any]], Any]:
        return collate_classification

    def evaluator(self, model: nn.Module, dataset: Any) -> ClassificationEvaluator:
        return ClassificationEvaluator(cast(TaskModel, model).num_classes)

    def report(
        self, evaluation: Evaluation, classes: Sequence[str], out_dir: Path
    ) -> tuple[dict[str, Any], str]:
        return classification_report(evaluation.metrics, evaluation.evaluator, classes, out_dir)

    def predict_deployed(self, model: Any, batch: ClsBatch) -> list[ClsPrediction]:
        """Class probabilities of every image of the batch (one run when the export takes
        batches)."""
        images = batch.images.cpu().numpy()
        if model.metadata["batch"] == "static":
            probs = np.concatenate(
                [model(images=images[i : i + 1])["probs"] for i in range(len(images))]
            )
        else:
            probs = model(images=images)["probs"]
        return [
            ClsPrediction(torch.from_numpy(p.copy()), int(p.argmax()), float(p.max()))
            for p in probs
        ]

    @torch.no_grad()
    def predict_images(
        self, model: nn.Module, images: Sequence[str], request: PredictRequest
    ) -> list[dict[str, Any]]:
        """The ``request.topk`` (default 5) most probable classes of each image, with
        probabilities."""
        classes, records = request.classes, {}
        topk = 5 if request.topk is None else request.topk
        # no pipeline: the classifier's preprocessor resizes (input_size) by itself
        for files in request_batches(model, images, None, request, exact=True):
            stacked = np.stack([f.image for f in files])
            batch = ClsBatch(torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous())
            for f, pred in zip(files, cast(TaskModel, model).predict(batch)):
                probs, idx = pred.probs.topk(min(topk, len(pred.probs)))
                top = [
                    {"class": classes[i], "index": i, "prob": float(p)}
                    for p, i in zip(probs.tolist(), idx.tolist())
                ]
                records[f.index] = {"image": str(images[f.index]), "top": top}
        return [records[i] for i in range(len(images))]
