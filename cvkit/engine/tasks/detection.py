"""The detection task: padded image batches with box targets, COCO mAP, drawn detections."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
from torch import nn

from cvkit.data.collate import collate_detection
from cvkit.engine.evaluate import Evaluation
from cvkit.engine.tasks.base import PredictRequest, Task
from cvkit.engine.tasks.file_batches import FileImage, request_batches
from cvkit.evaluation.coco_evaluator import CocoEvaluator
from cvkit.evaluation.coco_map import detections_to_coco
from cvkit.evaluation.reports import detection_report
from cvkit.models.tasks.protocol import TaskModel
from cvkit.registry import TASKS
from cvkit.structures import DetBatch, DetPrediction, DetTarget
from cvkit.visualize.draw import draw_detections


@TASKS.register("detection")
class DetectionTask(Task):
    """Detectors: ``DetBatch``, ``CocoEvaluator`` (bbox mAP), detections per image file."""

    default_metric = "AP"

    def collate(self, model: nn.Module) -> Callable[[Sequence[Any]], Any]:
        return collate_detection

    def evaluator(self, model: nn.Module, dataset: Any) -> CocoEvaluator:
        coco, cat_ids = getattr(dataset, "coco", None), getattr(dataset, "cat_ids", None)
        if coco is None or cat_ids is None:
            raise ValueError(
                f"{type(dataset).__name__} cannot be scored by COCO mAP: a detection "
                "evaluation dataset needs `coco` (its annotations as pycocotools' COCO) and "
                "`cat_ids` (the category id of each label), as CocoDetection has"
            )
        return CocoEvaluator(coco, cat_ids)

    def report(
        self, evaluation: Evaluation, classes: Sequence[str], out_dir: Path
    ) -> tuple[dict[str, Any], str]:
        return detection_report(
            evaluation.metrics, evaluation.evaluator, classes, out_dir, evaluation.first
        )

    def predict_deployed(self, model: Any, batch: DetBatch) -> list[DetPrediction]:
        """Detections in each file's pixels: every image of the batch cut to its size before
        padding and run alone, with its file's size for the graph to rescale to."""
        out = []
        for i, (h, w) in enumerate(batch.image_sizes):
            target = None if batch.targets is None else batch.targets[i]
            file_size = target.orig_size if target is not None else (h, w)
            result = model(
                images=batch.images[i : i + 1, :, :h, :w].cpu().numpy(),
                orig_sizes=np.array([file_size], dtype=np.int64),
            )
            n = int(result["num_detections"][0])
            out.append(
                DetPrediction(
                    torch.from_numpy(result["boxes"][0, :n].copy()),
                    torch.from_numpy(result["scores"][0, :n].copy()),
                    torch.from_numpy(result["labels"][0, :n].copy()),
                    -1 if target is None else target.image_id,
                )
            )
        return out

    @torch.no_grad()
    def predict_images(
        self, model: nn.Module, images: Sequence[str], request: PredictRequest
    ) -> list[dict[str, Any]]:
        """Detections in each file's own pixels; the ``data.val`` transforms (resizing) are
        applied first. Only detections scoring at least ``request.score_threshold`` are kept,
        and of them the ``request.topk`` best (all when ``None``). With ``request.out_dir``:
        each image with its kept boxes scoring at least ``request.draw_threshold`` drawn, a
        COCO results file of the kept detections (``results.json``) and the image ids it
        uses (``images.json``)."""
        draw = request.out_dir is not None
        records: dict[int, dict[str, Any]] = {}
        predictions: dict[int, DetPrediction] = {}
        batches = request_batches(model, images, request.pipeline(()), request, keep_orig=draw)
        for files in batches:
            preds = cast(TaskModel, model).predict(_file_batch(files))
            for f, pred in zip(files, preds):
                pred = predictions[f.index] = _kept(pred, request)
                records[f.index] = {
                    "image": str(images[f.index]),
                    "image_id": f.index + 1,
                    "detections": _rows(pred, request),
                }
                if request.out_dir is not None and f.orig is not None:
                    path_out = request.out_dir / f"{Path(f.path).stem}.png"
                    threshold = max(request.score_threshold, request.draw_threshold)
                    _draw(f.orig, pred, request.classes, path_out, threshold)
        ordered = [records[i] for i in range(len(images))]
        if request.out_dir is not None:
            out = request.out_dir
            coco = detections_to_coco([predictions[i] for i in range(len(images))], request.cat_ids)
            (out / "results.json").write_text(json.dumps(coco))
            ids = [{"id": r["image_id"], "file_name": r["image"]} for r in ordered]
            (out / "images.json").write_text(json.dumps(ids, indent=1))
        return ordered


def _file_batch(files: Sequence[FileImage]) -> DetBatch:
    """Decoded files as a batch; their empty targets carry the ids (file position + 1) and
    the files' sizes, to which the model rescales its boxes."""
    padded = collate_detection([{"image": f.image} for f in files])
    empty = [DetTarget.empty(f.index + 1, f.orig_size) for f in files]
    return DetBatch(padded.images, padded.image_sizes, empty)


def _kept(pred: DetPrediction, request: PredictRequest) -> DetPrediction:
    """The detections scoring at least ``request.score_threshold``, best first, at most
    ``request.topk`` of them (all when ``None``)."""
    order = pred.scores.argsort(descending=True, stable=True)
    order = order[pred.scores[order] >= request.score_threshold]
    if request.topk is not None:
        order = order[: request.topk]
    return DetPrediction(pred.boxes[order], pred.scores[order], pred.labels[order], pred.image_id)


def _rows(pred: DetPrediction, request: PredictRequest) -> list[dict[str, Any]]:
    return [
        {
            "class": request.classes[int(label)],
            "category_id": int(request.cat_ids[int(label)]),
            "bbox_xyxy": [round(v, 2) for v in box],
            "score": round(float(score), 4),
        }
        for box, score, label in zip(pred.boxes.tolist(), pred.scores, pred.labels)
    ]


def _draw(
    image: Any, pred: DetPrediction, classes: Sequence[str], path: Path, threshold: float
) -> None:
    drawn = draw_detections(
        image, pred.boxes.numpy(), pred.labels.tolist(), pred.scores.tolist(), classes, threshold
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
