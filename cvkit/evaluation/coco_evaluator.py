"""COCO mAP of a detector, accumulated batch by batch: the detection task's evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvkit.evaluation.coco_map import CocoResult, detections_to_coco, evaluate_coco
from cvkit.structures import DetBatch, DetPrediction


class CocoEvaluator:
    """Collects a detector's predictions, then scores them against a COCO annotation file.

    Args:
        ground_truth: the dataset's pycocotools ``COCO`` (or a COCO dict or file path).
        cat_ids: the category id of each contiguous label (label ``i`` -> ``cat_ids[i]``).

    After ``compute``, ``result`` holds the whole ``CocoResult`` (per-class table, precision
    arrays) and ``results`` the COCO results list (xywh, the dataset's category ids).
    """

    def __init__(self, ground_truth: Any, cat_ids: Sequence[int]) -> None:
        self.ground_truth, self.cat_ids = ground_truth, list(cat_ids)
        self.predictions: list[DetPrediction] = []
        self.result: CocoResult | None = None
        self.results: list[dict[str, Any]] = []

    def process(self, batch: DetBatch, predictions: Sequence[DetPrediction]) -> None:
        """Keep a batch's predictions (on the CPU; boxes in the files' pixels)."""
        self.predictions += [
            DetPrediction(p.boxes.cpu(), p.scores.cpu(), p.labels.cpu(), p.image_id)
            for p in predictions
        ]

    def state(self) -> list[DetPrediction]:
        """The predictions kept so far, to ``merge`` into another process's evaluator."""
        return list(self.predictions)

    def merge(self, states: Sequence[list[DetPrediction]]) -> None:
        """Add other evaluators' predictions (distributed evaluation), then order them all
        by image id: the results file is the same whichever process predicted an image."""
        for predictions in states:
            self.predictions += predictions
        self.predictions.sort(key=lambda p: p.image_id)

    def compute(self) -> dict[str, float]:
        """The 12 COCO stats (``AP``, ``AP50``, ...) of every prediction kept so far."""
        self.results = detections_to_coco(self.predictions, self.cat_ids)
        self.result = evaluate_coco(self.ground_truth, self.results)
        return dict(self.result.stats)
