"""Reports written after an evaluation: ``eval.json``, plots and pictures, and the text to print.

Each function takes what an evaluation produced (the metrics and the task's evaluator, and
optionally the first evaluated batch with its predictions), writes files into ``out_dir``
and returns ``(report, text)``: the JSON-able report and the lines for the terminal. Nothing
here runs a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvkit.evaluation.classification import ClassificationEvaluator
from cvkit.evaluation.coco_evaluator import CocoEvaluator
from cvkit.evaluation.segmentation import SegmentationEvaluator

Report = tuple[dict[str, Any], str]
FirstBatch = tuple[Any, list[Any]] | None  # (batch on the CPU, its predictions)


def classification_report(
    metrics: dict[str, float],
    evaluator: ClassificationEvaluator,
    classes: Sequence[str],
    out_dir: Path,
    first: FirstBatch = None,
) -> Report:
    """``eval.json`` (per-class table and metrics) and ``confusion_matrix.png``."""
    from cvkit.visualize.plots import plot_confusion_matrix

    report = {**evaluator.to_json_dict(list(classes)), "metrics": metrics}
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    plot_confusion_matrix(evaluator.confusion, classes, out_dir / "confusion_matrix.png")
    return report, evaluator.summary_table(list(classes))


def detection_report(
    metrics: dict[str, float],
    evaluator: CocoEvaluator,
    classes: Sequence[str],
    out_dir: Path,
    first: FirstBatch = None,
) -> Report:
    """``eval.json`` (COCO stats, per-class AP), ``results.json`` (COCO results),
    ``pr_curve.png`` and, given the first batch, ``predictions.png``."""
    from cvkit.visualize.batches import draw_detection_batch
    from cvkit.visualize.detection_plots import plot_pr_curve

    coco = evaluator.result
    if coco is None:
        raise ValueError("detection_report: the evaluator has not computed its result yet")
    report = {"metrics": metrics, "per_class": coco.per_class}
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    (out_dir / "results.json").write_text(json.dumps(evaluator.results))
    plot_pr_curve(coco.precision, out_dir / "pr_curve.png")
    lines = [*coco.summary.splitlines()[:12], coco.table()]
    if first is not None:
        drawn = draw_detection_batch(*first, classes, out_dir / "predictions.png")
        lines.append(f"predictions drawn: {drawn}; PR curve: {out_dir / 'pr_curve.png'}")
    return report, "\n".join(lines)


def segmentation_report(
    metrics: dict[str, float],
    evaluator: SegmentationEvaluator,
    classes: Sequence[str],
    out_dir: Path,
    first: FirstBatch = None,
) -> Report:
    """``eval.json`` (every number, the confusion matrix included; undefined values are
    ``null``) and, given the first batch, ``predictions.png``."""
    from cvkit.visualize.batches import draw_segmentation_batch

    report = {**evaluator.to_json_dict(list(classes)), "metrics": metrics}
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    lines = [evaluator.summary_table(list(classes))]
    if first is not None:
        drawn = draw_segmentation_batch(*first, classes, out_dir / "predictions.png")
        lines.append(f"predictions drawn: {drawn}")
    return report, "\n".join(lines)
