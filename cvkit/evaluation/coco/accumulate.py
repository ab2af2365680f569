"""Precision / recall arrays from matches, exactly as pycocotools' ``COCOeval.accumulate``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvkit.evaluation.coco.load import Detections, GroundTruth
from cvkit.evaluation.coco.match import AREA_RANGES, IOU_THRESHOLDS, MAX_DETS, Matches

REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


@dataclass
class Curves:
    """pycocotools' ``eval`` arrays; ``-1`` where a category has no (non-ignored) gt.

    Attributes:
        precision: ``[T, R, K, A, M]`` interpolated precision at the 101 recall thresholds.
        recall: ``[T, K, A, M]`` the recall reached.
        scores: ``[T, R, K, A, M]`` the detection score where each recall threshold is met.
        num_gt: ``[K, A]`` non-ignored gts per category and area range.
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    num_gt: np.ndarray


def accumulate(gt: GroundTruth, dets: Detections, matches: Matches) -> Curves:
    """Per category, area range and max-detections: detections of all images in score order
    (ties: image id, then rank in the image), cumulative TP / FP, precision made monotone,
    sampled at 101 recall points."""
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(REC_THRESHOLDS), len(gt.cat_ids)
    num_a, num_m = len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    scores = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    num_gt = np.stack(
        [np.bincount(gt.cat[~ign], minlength=num_k) for ign in matches.gt_ignored], axis=1
    )
    cat, score = dets.cat[matches.det], dets.score[matches.det]
    order = np.lexsort((matches.rank, dets.image[matches.det], -score, cat))
    # one gather of a small code instead of three of flags: 0 false positive, 1 true
    # positive, 2 or 3 ignored; [A, T, D] in category, then score order
    code = (matches.tp_like.view(np.int8) + 2 * matches.ignored.view(np.int8))[:, :, order]
    for m, max_det in enumerate(MAX_DETS):
        keep = matches.rank[order] < max_det
        code_m = code if keep.all() else code[:, :, keep]
        cat_m, score_m = cat[order][keep], score[order][keep]
        bounds = np.searchsorted(cat_m, np.arange(num_k + 1))
        for a in range(num_a):
            tp = _segment_cumsum(code_m[a] == 1, bounds)
            fp = _segment_cumsum(code_m[a] == 0, bounds)
            pr = tp / (fp + tp + np.spacing(1))
            for k in np.flatnonzero(num_gt[:, a]):
                lo, hi = bounds[k], bounds[k + 1]
                p, r, s = _curve(tp[:, lo:hi], num_gt[k, a], pr[:, lo:hi], score_m[lo:hi])
                precision[:, :, k, a, m], recall[:, k, a, m], scores[:, :, k, a, m] = p, r, s
    return Curves(precision, recall, scores, num_gt)


def _segment_cumsum(flags: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Running counts of ``flags [T, D]`` that restart at every category start in ``bounds``
    (int32). Sums over all categories first, then the category's start subtracted: every
    value is exact, as pycocotools' cumsum per category."""
    total = np.zeros((flags.shape[0], flags.shape[1] + 1), dtype=np.int32)
    np.cumsum(flags, axis=1, dtype=np.int32, out=total[:, 1:])
    start = np.repeat(total[:, bounds[:-1]], np.diff(bounds), axis=1)
    return total[:, 1:] - start


def _curve(tp: np.ndarray, num_gt: int, pr: np.ndarray, score: np.ndarray):
    """One category / area / max-dets -> ``(precision [T, R] interpolated, recall [T],
    scores [T, R])``.

    Args:
        tp: ``[T, nd]`` int, true positives so far, in score order; recall is ``tp / num_gt``.
        num_gt: the category's non-ignored gts (> 0).
        pr: ``[T, nd]`` precision so far.
        score: ``[nd]`` the detections' scores.

    pycocotools finds, per threshold row, the first detection whose float recall reaches
    each recall threshold (``searchsorted(rc, recThrs, "left")``). Division by ``num_gt`` is
    monotone, so that is the first detection whose integer ``tp`` reaches the smallest count
    ``c`` with ``c / num_gt >= thr`` (computed with the same float division): the same index,
    found for all ``T`` rows in one integer search (row ``t`` offset by ``t * (num_gt + 1)``).
    """
    num_t, nd = tp.shape
    num_r = len(REC_THRESHOLDS)
    if nd == 0:
        return np.zeros((num_t, num_r)), np.zeros(num_t), np.zeros((num_t, num_r))
    recall = tp[:, -1] / num_gt
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # pycocotools' backward sweep
    counts = np.searchsorted(np.arange(num_gt + 1) / num_gt, REC_THRESHOLDS, side="left")
    offset = np.arange(num_t, dtype=np.int64)[:, None] * (num_gt + 1)
    found = np.searchsorted((tp + offset).ravel(), offset + counts)  # [T, R] into the rows
    inds = found - np.arange(num_t)[:, None] * nd  # nd where the row never reaches it
    ok = inds < nd  # a prefix: recall thresholds never reached stay 0
    inds = np.minimum(inds, nd - 1)
    precision = np.where(ok, np.take_along_axis(pr, inds, axis=1), 0.0)
    at_score = np.where(ok, score[inds], 0.0)
    return precision, recall, at_score
