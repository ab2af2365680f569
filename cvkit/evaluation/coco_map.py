"""COCO mAP through pycocotools' reference COCOeval: the 12 summary stats and per-class AP.

Results files are COCO's format (``image_id``, ``category_id``, ``bbox`` as xywh in the
original image's pixels, ``score``); ``detections_to_coco`` converts cvkit's predictions at
this edge, mapping contiguous labels back to the dataset's category ids.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvkit.structures import DetPrediction

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


@dataclass
class CocoResult:
    """The 12 COCO stats (``AP``, ``AP50``... as in ``COCOeval.summarize``) and per-class AP.

    ``per_class`` maps class name to ``{"AP", "AP50", "num_gt"}``; AP is ``None`` for a
    category without ground truth (pycocotools writes -1 there).
    """

    stats: dict[str, float]
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""

    def table(self) -> str:
        rows = [f"{'class':<20} {'AP':>7} {'AP50':>7} {'gt':>6}"]
        for name, r in self.per_class.items():
            ap = "n/a" if r["AP"] is None else f"{r['AP']:.4f}"
            ap50 = "n/a" if r["AP50"] is None else f"{r['AP50']:.4f}"
            rows.append(f"{name:<20} {ap:>7} {ap50:>7} {r['num_gt']:>6}")
        return "\n".join(rows)


def detections_to_coco(
    predictions: Sequence[DetPrediction], cat_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """cvkit predictions -> COCO results dicts (xywh, the dataset's category ids)."""
    results = []
    for p in predictions:
        boxes = p.boxes.detach().cpu().double().numpy()
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        for box, score, label in zip(xywh.tolist(), p.scores.tolist(), p.labels.tolist()):
            results.append(
                {
                    "image_id": int(p.image_id),
                    "category_id": int(cat_ids[label]),
                    "bbox": [round(v, 3) for v in box],
                    "score": round(float(score), 5),
                }
            )
    return results


def evaluate_coco(coco_gt, results: list[dict[str, Any]], iou_type: str = "bbox") -> CocoResult:
    """Score ``results`` against a pycocotools ``COCO`` object with COCOeval.

    Returns:
        a ``CocoResult``; with no detections at all every stat is 0.
    """
    from pycocotools.cocoeval import COCOeval

    if not results:
        return CocoResult({name: 0.0 for name in STAT_NAMES}, _empty_per_class(coco_gt))
    with contextlib.redirect_stdout(io.StringIO()) as log:
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    return CocoResult(stats, _per_class(ev, coco_gt), log.getvalue())


def _per_class(ev, coco_gt) -> dict[str, dict[str, Any]]:
    # precision: [T IoU thresholds, R recall points, K classes, A area ranges, M max dets]
    precision = ev.eval["precision"]
    out = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        ap = float(p[p > -1].mean()) if (p > -1).any() else None
        p50 = precision[0, :, k, 0, -1]
        ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else None
        name = coco_gt.cats[cat_id]["name"]
        out[name] = {"AP": ap, "AP50": ap50, "num_gt": len(coco_gt.getAnnIds(catIds=[cat_id]))}
    return out


def _empty_per_class(coco_gt) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: {
            "AP": 0.0 if coco_gt.getAnnIds(catIds=[c["id"]]) else None,
            "AP50": 0.0 if coco_gt.getAnnIds(catIds=[c["id"]]) else None,
            "num_gt": len(coco_gt.getAnnIds(catIds=[c["id"]])),
        }
        for c in coco_gt.dataset["categories"]
    }
