"""The report of ``cvkit coco-eval --out``: ``coco_eval.json``, precision-recall plots and the
detection confusion matrix. Imports no torch, so the command starts in a fraction of a second.

Every number goes into ``coco_eval.json``, the per-class precision-recall curves included
(``pr_curves``), so that any plot can be drawn again later without evaluating again. The
default plots are one figure each; one PNG per class is drawn only when asked for
(``per_class_plots``), as a class count in the hundreds (LVIS) would make it thousands of
files and most of the time taken.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from cvkit.evaluation.coco_map import CocoResult


def coco_eval_report(
    result: CocoResult,
    ground_truth: str | Path,
    results: str | Path,
    iou_type: str,
    out_dir: str | Path,
    score_threshold: float,
    per_class_plots: bool = False,
) -> str:
    """``cvkit coco-eval --out``: ``coco_eval.json``, the precision-recall plots (mean, and
    a grid of small panels, one per class), the detection confusion matrix, and with
    ``per_class_plots`` one PNG per class in ``pr_curves/``; returns the lines to print.

    Args:
        result: the evaluation; its ``inputs`` (``evaluate_coco(..., keep_inputs=True)``)
            spare reading the two files again for the confusion matrix.
        ground_truth, results: the two files (named in the JSON; read if ``result`` has no
            ``inputs``).
        iou_type: as evaluated; out_dir: the folder to write (created).
        score_threshold: the confusion matrix leaves out detections scoring below it.
        per_class_plots: also write ``pr_curves/<id>_<name>.png``.
    """
    import orjson

    from cvkit.coco_file import gc_paused
    from cvkit.evaluation.det_confusion import detection_confusion
    from cvkit.visualize import detection_plots as plots

    start, out, p = time.perf_counter(), Path(out_dir), result.precision
    gt, dets = result.inputs if result.inputs is not None else _load(ground_truth, results)
    confusion = detection_confusion(gt, dets, score_threshold=score_threshold)
    out.mkdir(parents=True, exist_ok=True)
    with gc_paused():
        report = {
            "ground_truth": str(ground_truth),
            "results": str(results),
            "iou_type": iou_type,
            **result.to_json(numpy=True),
            "pr_curves": plots.pr_curve_data(p, result.class_names, result.cat_ids),
            "confusion": confusion.to_json(),
        }
        data = orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY)
    (out / "coco_eval.json").write_bytes(data)
    written = ["coco_eval.json", "pr_curve.png", "pr_curves_grid.png", "confusion_matrix.png"]
    plots.plot_pr_curve(p, out / "pr_curve.png")
    plots.plot_pr_grid(p, result.class_names, out / "pr_curves_grid.png")
    plots.plot_detection_confusion(
        confusion.counts, confusion.class_names, out / "confusion_matrix.png",
        iou_threshold=confusion.iou_threshold, score_threshold=confusion.score_threshold,
    )  # fmt: skip
    if per_class_plots:
        pngs = plots.plot_pr_per_class(p, result.class_names, out / "pr_curves", result.cat_ids)
        written.append(f"pr_curves/ ({len(pngs)} PNGs)")
    return (
        f"{confusion.summary()}\nwrote {out}: {', '.join(written)} "
        f"in {time.perf_counter() - start:.2f} s"
    )


def _load(ground_truth: str | Path, results: str | Path) -> tuple[Any, Any]:
    """Both files as cvkit's arrays (boxes from the masks where results have none)."""
    from cvkit.evaluation.coco.load import load_ground_truth, load_results

    gt = load_ground_truth(ground_truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the evaluation has warned about these results
        return gt, load_results(results, gt)
