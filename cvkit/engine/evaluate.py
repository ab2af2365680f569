"""Evaluation loops: run a model over a loader and score it."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvkit.evaluation.classification import ClassificationEvaluator
from cvkit.evaluation.coco_map import CocoResult, detections_to_coco, evaluate_coco
from cvkit.evaluation.segmentation import SegmentationEvaluator


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[dict[str, float], ClassificationEvaluator]:
    """Top-k accuracy, macro precision / recall / F1 and mean loss of a classifier.

    Returns:
        ``(metrics, evaluator)``; the evaluator holds the confusion matrix and per-class
        numbers for tables and plots.
    """
    evaluator = ClassificationEvaluator(model.num_classes)
    loss_sum, count = 0.0, 0
    loader.sampler.set_epoch(0)
    for batch in loader:
        batch = batch.to(device)
        logits = model(batch.images).float()
        loss_sum += model.loss_fn(logits, batch.labels).item() * len(batch)
        count += len(batch)
        evaluator.update(logits.cpu(), batch.labels.cpu())
    if count == 0:
        raise ValueError("the evaluation data are empty")
    return {**evaluator.compute(), "val_loss": loss_sum / count}, evaluator


@torch.no_grad()
def evaluate_detector(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[dict[str, float], CocoResult, list[dict]]:
    """COCO bbox mAP of a detector over a COCO-format dataset.

    The dataset (``loader.dataset.dataset``) must expose ``coco`` (the pycocotools ``COCO``
    of its annotation file) and ``cat_ids`` (label -> category id).

    Returns:
        ``(metrics, coco_result, results)``: the 12 stats plus ``val_loss``, the per-class
        table, and the COCO results list (xywh, the dataset's category ids).
    """
    dataset = loader.dataset.dataset
    predictions, loss_sum, count = [], 0.0, 0
    loader.sampler.set_epoch(0)
    for batch in loader:
        batch = batch.to(device)
        losses = model.loss(batch)
        loss_sum += float(sum(losses.values())) * len(batch)
        count += len(batch)
        predictions += model.predict(batch)
    if count == 0:
        raise ValueError("the evaluation data are empty")
    results = detections_to_coco(predictions, dataset.cat_ids)
    coco = evaluate_coco(dataset.coco, results)
    return {**coco.stats, "val_loss": loss_sum / count}, coco, results


@torch.no_grad()
def evaluate_segmenter(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[dict[str, float], SegmentationEvaluator]:
    """mIoU, pixel accuracy, mean class accuracy, fwIoU and mean loss of a segmenter.

    Pixels are scored at the resolution of the batched masks (after the evaluation
    transforms): one forward pass gives both the loss and the scores. For numbers at each
    file's own resolution, give the evaluation data transforms that do not resize.

    Returns:
        ``(metrics, evaluator)``: the metrics plus ``val_loss`` (the summed loss terms, as in
        training, averaged over images); the evaluator holds the confusion matrix and the
        per-class IoU for tables.
    """
    evaluator = SegmentationEvaluator(model.num_classes, ignore_index=model.ignore_index)
    loss_sum, count = 0.0, 0
    loader.sampler.set_epoch(0)
    for batch in loader:
        batch = batch.to(device)
        losses, logits = model.loss_and_logits(batch)
        loss_sum += float(sum(losses.values())) * len(batch)
        count += len(batch)
        evaluator.update(logits.argmax(dim=1), batch.masks)
    if count == 0:
        raise ValueError("the evaluation data are empty")
    return {**evaluator.compute(), "val_loss": loss_sum / count}, evaluator
