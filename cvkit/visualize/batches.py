"""Pictures of one evaluated batch: the model's predictions drawn on the batch's images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvkit.structures import DetBatch, DetPrediction, SegBatch, SegPrediction
from cvkit.visualize.draw import caption, draw_detections, draw_segmentation, save_grid


def draw_detection_batch(
    batch: DetBatch,
    predictions: Sequence[DetPrediction],
    classes: Sequence[str],
    path: str | Path,
    limit: int = 8,
) -> Path:
    """The first ``limit`` images of ``batch`` with their detections drawn, as one grid PNG.

    Predictions are in the original files' pixels (``DetTarget.orig_size``); they are scaled
    to the batched image (after the evaluation transforms) they are drawn on.
    """
    drawn = []
    for i, pred in enumerate(list(predictions)[:limit]):
        h, w = batch.image_sizes[i]
        image = batch.images[i, :, :h, :w].permute(1, 2, 0).cpu().numpy()
        if batch.targets is not None:
            oh, ow = batch.targets[i].orig_size
            factor = pred.boxes.new_tensor([w / ow, h / oh, w / ow, h / oh])
        else:
            factor = pred.boxes.new_ones(4)
        boxes = (pred.boxes * factor).cpu().numpy()
        drawn.append(
            draw_detections(image, boxes, pred.labels.tolist(), pred.scores.tolist(), classes)
        )
    return save_grid(drawn, path)


def draw_segmentation_batch(
    batch: SegBatch,
    predictions: Sequence[SegPrediction],
    classes: Sequence[str],
    path: str | Path,
    limit: int = 8,
) -> Path:
    """The first ``limit`` images of ``batch``, each as its true mask and the predicted one
    overlaid side by side, two images a row; a class named ``background`` is left clear.

    Drawn on the batched images (after the evaluation transforms), at the pixels the metrics
    score (see ``SegmentationEvaluator.process``).
    """
    lower = [str(c).lower() for c in classes]
    background = lower.index("background") if "background" in lower else None
    cells = []
    for i, pred in enumerate(list(predictions)[:limit]):
        h, w = batch.image_sizes[i]
        image = batch.images[i, :, :h, :w].permute(1, 2, 0).cpu().numpy()
        guess = pred.mask_at((h, w)).cpu().numpy()
        drawn = draw_segmentation(image, guess, classes, background=background)
        cell = [caption(drawn, "prediction")]
        if batch.masks is not None:
            truth = batch.masks[i, :h, :w].cpu().numpy()
            truth_drawn = draw_segmentation(image, truth, classes, background=background)
            cell = [caption(truth_drawn, "truth"), np.full((h, 2, 3), 255, np.uint8), *cell]
        cells.append(np.concatenate(cell, axis=1))
    return save_grid(cells, path, columns=2)
