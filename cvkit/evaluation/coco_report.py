"""The report of ``cvkit coco-eval --out``: ``coco_eval.json``, precision-recall plots and the
detection confusion matrix. Imports no torch, so the command starts in a fraction of a second."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from cvkit.evaluation.coco_map import CocoResult


def coco_eval_report(
    result: CocoResult,
    ground_truth: str | Path,
    results: str | Path,
    iou_type: str,
    out_dir: str | Path,
    score_threshold: float,
) -> str:
    """``cvkit coco-eval --out``: ``coco_eval.json``, the precision-recall plots (mean, grid,
    one per class) and the detection confusion matrix; returns the lines to print."""
    import orjson

    from cvkit.evaluation.coco.load import gc_paused, load_ground_truth, load_results
    from cvkit.evaluation.det_confusion import detection_confusion
    from cvkit.visualize import detection_plots as plots

    start, out = time.perf_counter(), Path(out_dir)
    gt = load_ground_truth(ground_truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the evaluation has warned about these results
        dets = load_results(results, gt)  # boxes (from the masks where there are none)
    confusion = detection_confusion(gt, dets, score_threshold=score_threshold)
    out.mkdir(parents=True, exist_ok=True)
    with gc_paused():  # to_json makes ~10^6 lists; the collector would walk them all
        report = {
            "ground_truth": str(ground_truth),
            "results": str(results),
            "iou_type": iou_type,
            **result.to_json(),
            "confusion": confusion.to_json(),
        }
        (out / "coco_eval.json").write_bytes(orjson.dumps(report))
    p = result.precision
    plots.plot_pr_curve(p, out / "pr_curve.png")
    plots.plot_pr_grid(p, result.class_names, out / "pr_curves_grid.png")
    per_class = plots.plot_pr_per_class(p, result.class_names, out / "pr_curves", result.cat_ids)
    plots.plot_detection_confusion(
        confusion.counts, confusion.class_names, out / "confusion_matrix.png",
        iou_threshold=confusion.iou_threshold, score_threshold=confusion.score_threshold,
    )  # fmt: skip
    return (
        f"{confusion.summary()}\nwrote {out}: coco_eval.json, pr_curve.png, pr_curves_grid.png, "
        f"pr_curves/ ({len(per_class)} PNGs), confusion_matrix.png "
        f"in {time.perf_counter() - start:.2f} s"
    )
