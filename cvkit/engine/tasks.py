"""What differs between tasks in the engine: how batches are collated, how a model is
scored, which metric to follow, and the report written after the final evaluation.

A task class says which it is with a ``task`` attribute (``"classification"`` by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvkit.data.collate import collate_classification, collate_segmentation
from cvkit.engine.evaluate import evaluate_classifier, evaluate_detector, evaluate_segmenter


@dataclass(frozen=True)
class TaskSpec:
    collate: Callable
    evaluate: Callable[[nn.Module, DataLoader, torch.device], dict[str, float]]
    report: Callable[[nn.Module, DataLoader, torch.device, list[str], Path], dict[str, Any]]
    default_metric: str


def classification_report(model, loader, device, classes, out_dir: Path) -> dict[str, Any]:
    """Per-class table (printed), ``eval.json`` and ``confusion_matrix.png``."""
    from cvkit.visualize.plots import plot_confusion_matrix

    metrics, evaluator = evaluate_classifier(model, loader, device)
    report = {**evaluator.to_json_dict(classes), "metrics": metrics}  # metrics has val_loss
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    plot_confusion_matrix(evaluator.confusion, classes, out_dir / "confusion_matrix.png")
    print(evaluator.summary_table(classes))
    return report


def detection_report(model, loader, device, classes, out_dir: Path) -> dict[str, Any]:
    """The COCO summary and per-class AP (printed), ``eval.json``, ``results.json``, the
    mean precision-recall curve and a picture of predictions."""
    from cvkit.visualize.detection_plots import plot_pr_curve

    metrics, coco, results = evaluate_detector(model, loader, device)
    report = {"metrics": metrics, "per_class": coco.per_class}
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    (out_dir / "results.json").write_text(json.dumps(results))
    plot_pr_curve(coco.precision, out_dir / "pr_curve.png")
    draw_first_batch(model, loader, device, classes, out_dir / "predictions.png")
    print("\n".join(coco.summary.splitlines()[:12]))
    print(coco.table())
    print(f"predictions drawn: {out_dir / 'predictions.png'}; PR curve: {out_dir / 'pr_curve.png'}")
    return report


def segmentation_report(model, loader, device, classes, out_dir: Path) -> dict[str, Any]:
    """Per-class IoU and accuracy table (printed), ``eval.json`` (every number, the
    confusion matrix included; undefined values are ``null``) and ``predictions.png``."""
    metrics, evaluator = evaluate_segmenter(model, loader, device)
    report = {**evaluator.to_json_dict(classes), "metrics": metrics}  # metrics has val_loss
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    drawn = draw_first_segmentation_batch(
        model, loader, device, classes, out_dir / "predictions.png"
    )
    print(evaluator.summary_table(classes))
    print(f"predictions drawn: {drawn}")
    return report


@torch.no_grad()
def draw_first_segmentation_batch(model, loader, device, classes, path: Path, limit: int = 8):
    """The first ``limit`` images of ``loader``, each as its true mask and the model's
    prediction overlaid side by side, two images a row; a class named ``background`` is left
    transparent.

    Drawn on the batched images (after the evaluation transforms), from the logits at the
    batch's pixels, the ones the metrics score.
    """
    import numpy as np

    from cvkit.visualize.draw import caption, draw_segmentation, save_grid

    loader.sampler.set_epoch(0)
    batch = next(iter(loader)).to(device)
    predicted = model(batch.images, batch.image_sizes).argmax(dim=1).cpu().numpy()
    masks = batch.masks.cpu().numpy()
    lower = [str(c).lower() for c in classes]
    background = lower.index("background") if "background" in lower else None
    cells = []
    for i in range(min(limit, len(batch))):
        h, w = batch.image_sizes[i]
        image = batch.images[i, :, :h, :w].permute(1, 2, 0).cpu().numpy()
        truth = draw_segmentation(image, masks[i, :h, :w], classes, background=background)
        guess = draw_segmentation(image, predicted[i, :h, :w], classes, background=background)
        gap = np.full((h, 2, 3), 255, dtype=np.uint8)
        cells.append(
            np.concatenate([caption(truth, "truth"), gap, caption(guess, "prediction")], axis=1)
        )
    return save_grid(cells, path, columns=2)


@torch.no_grad()
def draw_first_batch(model, loader, device, classes, path: Path, limit: int = 8) -> Path:
    """The first ``limit`` images of ``loader`` with the model's detections drawn."""
    from cvkit.visualize.draw import draw_detections, save_grid

    loader.sampler.set_epoch(0)
    batch = next(iter(loader)).to(device)
    drawn = []
    for i, pred in enumerate(model.predict(batch)[:limit]):
        h, w = batch.image_sizes[i]
        image = batch.images[i, :, :h, :w].permute(1, 2, 0).cpu().numpy()
        # predictions are in the original file's pixels; draw them on the batched image
        sy, sx = h / batch.targets[i].orig_size[0], w / batch.targets[i].orig_size[1]
        boxes = (pred.boxes * pred.boxes.new_tensor([sx, sy, sx, sy])).cpu().numpy()
        drawn.append(
            draw_detections(image, boxes, pred.labels.tolist(), pred.scores.tolist(), classes)
        )
    return save_grid(drawn, path)


def _collate_detection(items):
    from cvkit.data.collate import collate_detection

    return collate_detection(items)


TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(
        collate_classification,
        lambda m, loader, d: evaluate_classifier(m, loader, d)[0],
        classification_report,
        "top1",
    ),
    "detection": TaskSpec(
        _collate_detection,
        lambda m, loader, d: evaluate_detector(m, loader, d)[0],
        detection_report,
        "AP",
    ),
    "segmentation": TaskSpec(
        collate_segmentation,
        lambda m, loader, d: evaluate_segmenter(m, loader, d)[0],
        segmentation_report,
        "mIoU",
    ),
}


def spec_for(model: nn.Module) -> TaskSpec:
    return TASKS[getattr(model, "task", "classification")]
