"""Evaluation loops: run a model over a loader and score it."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvkit.evaluation.classification import ClassificationEvaluator


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
