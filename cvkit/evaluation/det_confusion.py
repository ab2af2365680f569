"""A detection confusion matrix: which class each ground-truth object was detected as.

COCO mAP says how good a detector is; this says *how* it goes wrong. Per image, detections
with ``score >= score_threshold`` are taken in score order (ties: file order) and each takes
the still-unmatched, non-crowd ground truth of **any** class with the highest IoU, if that IoU
is ``>= iou_threshold`` (ties: the first in file order). A detection that matches no such gt
but overlaps a crowd region that much is absorbed (a crowd covers many objects, so this is
neither right nor wrong) and not counted; one that overlaps nothing is a false positive.

``counts`` is ``[K + 1, K + 1]``: ``counts[g, p]`` for ``g, p < K`` is the number of gts of
class ``g`` matched by a detection of class ``p`` (the diagonal: the right class; elsewhere: a
well-placed box with the wrong class); row ``K`` (background) counts false positives by
predicted class; column ``K`` counts missed gts (no detection matched them) by gt class.
IoU is pycocotools' box IoU (:func:`cvkit.evaluation.coco.match.bbox_iou`), with a crowd's
union being the detection's own area. Boxes are COCO's ``xywh``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from cvkit.evaluation.coco.load import Detections, GroundTruth
from cvkit.evaluation.coco.match import bbox_iou

__all__ = ["DetectionConfusion", "confusion_counts", "detection_confusion"]


@dataclass
class DetectionConfusion:
    """A detection confusion matrix and how it was made.

    Attributes:
        counts: ``[K + 1, K + 1]`` int64; rows are gt classes then background (false
            positives), columns predicted classes then background (missed gts).
        class_names: the ``K`` class names (without background).
        iou_threshold, score_threshold: the matching settings.
    """

    counts: np.ndarray
    class_names: list[str]
    iou_threshold: float
    score_threshold: float

    @property
    def false_positives(self) -> np.ndarray:
        """``[K]`` detections that matched nothing, by predicted class."""
        return self.counts[-1, :-1]

    @property
    def missed(self) -> np.ndarray:
        """``[K]`` non-crowd gts that no detection matched, by gt class."""
        return self.counts[:-1, -1]

    def summary(self) -> str:
        """One line: right class, wrong class, false positives, missed."""
        inner = self.counts[:-1, :-1]
        right = int(np.trace(inner))
        return (
            f"detections (IoU >= {self.iou_threshold:g}, score >= {self.score_threshold:g}): "
            f"{right} right class, {int(inner.sum()) - right} wrong class, "
            f"{int(self.false_positives.sum())} false positives; "
            f"{int(self.missed.sum())} gts missed"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: the matrix as nested lists with its row and column labels."""
        labels = [*self.class_names, "background"]
        return {
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
            "rows": "ground-truth class, then background (false positives)",
            "columns": "predicted class, then background (missed)",
            "labels": labels,
            "counts": self.counts.tolist(),
        }


def confusion_counts(
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_crowd: np.ndarray,
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    det_labels: np.ndarray,
    det_scores: np.ndarray,
    num_classes: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """Confusion counts over many images (see the module docstring).

    Detections only match gts of their own image. Within an image, equal scores keep the
    detections' order and equal IoUs prefer the gt that comes first.

    Args:
        gt_image: ``[G]`` int image of each gt (any ids; only equality matters).
        gt_boxes: ``[G, 4]`` xywh; gt_labels: ``[G]`` int in ``[0, K)``; gt_crowd: ``[G]`` bool.
        det_image: ``[D]`` int; det_boxes: ``[D, 4]`` xywh; det_labels: ``[D]`` int in
            ``[0, K)``; det_scores: ``[D]``.
        num_classes: ``K``.
        iou_threshold: the IoU a match needs (``>=``).
        score_threshold: detections scoring below it are left out.

    Returns:
        ``[K + 1, K + 1]`` int64 counts.

    Example:
        >>> gt = np.array([[0.0, 0, 10, 10]])
        >>> dt = np.array([[0.0, 0, 10, 10], [50.0, 50, 10, 10]])
        >>> confusion_counts([0], gt, [0], [False], [0, 0], dt, [1, 0], [0.9, 0.8],
        ...                  num_classes=2).tolist()
        [[0, 1, 0], [0, 0, 0], [1, 0, 0]]
    """
    gt_image = np.asarray(gt_image, dtype=np.int64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    gt_crowd = np.asarray(gt_crowd, dtype=bool).reshape(-1)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    keep = np.flatnonzero(det_scores >= score_threshold)
    det_image = np.asarray(det_image, dtype=np.int64).reshape(-1)[keep]
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)[keep]
    det_labels = np.asarray(det_labels, dtype=np.int64).reshape(-1)[keep]
    det_scores = det_scores[keep]
    # detections by image, then score (high first), then their order; gts by image, stable
    det_order = np.lexsort((np.arange(len(keep)), -det_scores, det_image))
    gt_order = np.argsort(gt_image, kind="stable")
    pair_det, pair_gt, iou = _close_pairs(
        det_image[det_order], det_boxes[det_order], gt_image[gt_order], gt_boxes[gt_order],
        gt_crowd[gt_order], iou_threshold,
    )  # fmt: skip
    crowd = gt_crowd[gt_order][pair_gt]
    absorbed = np.zeros(len(keep), dtype=bool)
    absorbed[pair_det[crowd]] = True
    matched = _greedy(
        pair_det[~crowd], pair_gt[~crowd], iou[~crowd], _rank(det_image[det_order]), len(keep)
    )
    labels = det_labels[det_order]
    gt_sorted_labels = gt_labels[gt_order]
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    hit = matched >= 0
    np.add.at(counts, (gt_sorted_labels[matched[hit]], labels[hit]), 1)
    np.add.at(counts[num_classes], labels[~hit & ~absorbed], 1)  # false positives (a view)
    missed = ~gt_crowd[gt_order]
    missed[matched[hit]] = False
    np.add.at(counts, (gt_sorted_labels[missed], num_classes), 1)
    return counts


def detection_confusion(
    gt: GroundTruth,
    dets: Detections,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
) -> DetectionConfusion:
    """The confusion over every image of a COCO ground truth and its results.

    Args:
        gt: from :func:`cvkit.evaluation.coco.load.load_ground_truth`.
        dets: from :func:`cvkit.evaluation.coco.load.load_results` with the same ``gt``.
        iou_threshold, score_threshold: see :func:`confusion_counts`.
    """
    counts = confusion_counts(
        gt.image, gt.box, gt.cat, gt.crowd, dets.image, dets.box, dets.cat, dets.score,
        len(gt.cat_ids), iou_threshold, score_threshold,
    )  # fmt: skip
    return DetectionConfusion(counts, list(gt.cat_names), iou_threshold, score_threshold)


def _close_pairs(
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_crowd: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (detection, gt) of the same image with IoU >= ``threshold``, both image-sorted.

    Returns ``(det [P], gt [P], iou [P])``, ordered by detection, then gt.
    """
    start = np.searchsorted(gt_image, det_image, side="left")
    count = np.searchsorted(gt_image, det_image, side="right") - start
    pair_det = np.repeat(np.arange(len(det_image)), count)
    first = np.repeat(np.cumsum(count) - count, count)  # each run's start among the pairs
    pair_gt = np.repeat(start, count) + np.arange(len(pair_det)) - first
    iou = bbox_iou(
        det_boxes[pair_det][:, None, :], gt_boxes[pair_gt][:, None, :], gt_crowd[pair_gt][:, None]
    )[:, 0, 0]
    close = iou >= threshold
    return pair_det[close], pair_gt[close], iou[close]


def _rank(sorted_image: np.ndarray) -> np.ndarray:
    """Each detection's position within its image's run."""
    if len(sorted_image) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_image[1:] != sorted_image[:-1]])
    return np.arange(len(sorted_image)) - np.repeat(
        starts, np.diff(np.r_[starts, len(sorted_image)])
    )


def _greedy(
    pair_det: np.ndarray, pair_gt: np.ndarray, iou: np.ndarray, rank: np.ndarray, num_det: int
) -> np.ndarray:
    """The greedy walk, one detection rank at a time for every image at once.

    A detection's choice depends only on the detections before it *in its image*, so the
    ``r``-th detections of all images can choose together. Returns ``[num_det]`` the matched
    gt, ``-1`` for none.
    """
    matched = np.full(num_det, -1, dtype=np.int64)
    if len(pair_det) == 0:
        return matched
    taken = np.zeros(int(pair_gt.max()) + 1, dtype=bool)
    pair_rank = rank[pair_det]
    order = np.argsort(pair_rank, kind="stable")  # keeps detection, then gt order
    pair_det, pair_gt, iou = pair_det[order], pair_gt[order], iou[order]
    pair_rank = pair_rank[order]
    bounds = np.flatnonzero(np.r_[True, pair_rank[1:] != pair_rank[:-1], True])
    for a, b in pairwise(bounds):
        d, g = pair_det[a:b], pair_gt[a:b]
        value = np.where(taken[g], -1.0, iou[a:b])
        # per detection, the best free gt; equal IoUs: the first gt
        best = np.lexsort((g, -value, d))
        first = best[np.r_[True, d[best][1:] != d[best][:-1]]]
        first = first[value[first] >= 0]
        matched[d[first]] = g[first]
        taken[g[first]] = True
    return matched
