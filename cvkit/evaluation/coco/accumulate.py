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
    counted = ~matches.ignored[:, :, order]  # [A, T, D] in category-then-score order
    tps = matches.tp_like[:, :, order] & counted
    fps = ~matches.tp_like[:, :, order] & counted
    for m, max_det in enumerate(MAX_DETS):
        keep = matches.rank[order] < max_det
        cat_m, score_m = cat[order][keep], score[order][keep]
        bounds = np.searchsorted(cat_m, np.arange(num_k + 1))
        # one cumulative count over all categories; each category's run is taken relative to
        # where it starts (integers, so exact, as pycocotools' per-category cumsum)
        tp_sum = _cumsum(tps if keep.all() else tps[:, :, keep])
        fp_sum = _cumsum(fps if keep.all() else fps[:, :, keep])
        for a in range(num_a):
            for k in np.flatnonzero(num_gt[:, a]):
                lo, hi = bounds[k], bounds[k + 1]
                p, r, s = _curve(
                    (tp_sum[a, :, lo + 1 : hi + 1] - tp_sum[a, :, lo : lo + 1]).astype(float),
                    (fp_sum[a, :, lo + 1 : hi + 1] - fp_sum[a, :, lo : lo + 1]).astype(float),
                    score_m[lo:hi],
                    int(num_gt[k, a]),
                )
                precision[:, :, k, a, m], recall[:, k, a, m], scores[:, :, k, a, m] = p, r, s
    return Curves(precision, recall, scores, num_gt)


def _cumsum(flags: np.ndarray) -> np.ndarray:
    """``[A, T, D]`` bool -> ``[A, T, D + 1]`` counts, starting with a 0 column."""
    out = np.zeros((*flags.shape[:2], flags.shape[2] + 1), dtype=np.int32)
    np.cumsum(flags, axis=2, dtype=np.int32, out=out[:, :, 1:])
    return out


def _curve(tp_sum: np.ndarray, fp_sum: np.ndarray, score: np.ndarray, npig: int):
    """One category / area / max-dets: cumulative ``tp_sum``, ``fp_sum`` ``[T, nd]`` in score
    order -> ``(precision [T, R], recall [T], scores [T, R])``."""
    num_t, nd = tp_sum.shape
    rc = tp_sum / npig
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    recall = rc[:, -1] if nd else np.zeros(num_t)
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # pycocotools' backward sweep
    precision = np.zeros((num_t, len(REC_THRESHOLDS)))
    at_score = np.zeros((num_t, len(REC_THRESHOLDS)))
    for t in range(num_t):
        inds = np.searchsorted(rc[t], REC_THRESHOLDS, side="left")
        ok = inds < nd  # a prefix: recall thresholds never reached stay 0
        precision[t, ok] = pr[t, inds[ok]]
        at_score[t, ok] = score[inds[ok]]
    return precision, recall, at_score
