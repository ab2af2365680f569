"""Precision / recall arrays from matches, exactly as pycocotools' ``COCOeval.accumulate``.

pycocotools walks every detection of a category in score order, keeping running counts of
true and false positives. The curve it keeps is read at the detection where recall first
reaches each of 101 thresholds, which is always a true positive (or, for recall 0, the first
detection), and its interpolated precision (the maximum to the right) is reached at a true
positive too, since between two true positives precision only falls. So the work here is per
true positive: its number, the false positives before it and a maximum to the right, for all
categories and thresholds at once; no array spans every detection times every threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvkit.evaluation.coco.load import Detections, GroundTruth
from cvkit.evaluation.coco.match import AREA_RANGES, IOU_THRESHOLDS, MAX_DETS, Matches, outside

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


@dataclass
class _Ranked:
    """Detections in pycocotools' order (category, score high first, image, rank in the
    image), ``n`` of them.

    Attributes:
        cat, score, rank: ``[n]``; bounds: ``[K + 1]`` where each category starts.
        hit_pos: ``[H]`` (sorted) where the matched detections are.
        tp, fp: ``[A, T, H]`` their true / false positive flags.
        other_fp: ``[A, n]`` false positives among the unmatched (the others are ignored).
    """

    cat: np.ndarray
    score: np.ndarray
    rank: np.ndarray
    bounds: np.ndarray
    hit_pos: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    other_fp: np.ndarray

    def first(self, max_det: int) -> _Ranked:
        """Only the best ``max_det`` of each (image, category) pair, in the same order."""
        keep = self.rank < max_det
        position = np.cumsum(keep) - 1
        hit_kept = keep[self.hit_pos]
        cat = self.cat[keep]
        return _Ranked(
            cat=cat,
            score=self.score[keep],
            rank=self.rank[keep],
            bounds=np.searchsorted(cat, np.arange(len(self.bounds))),
            hit_pos=position[self.hit_pos[hit_kept]],
            tp=self.tp[:, :, hit_kept],
            fp=self.fp[:, :, hit_kept],
            other_fp=self.other_fp[:, keep],
        )


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
    counts = _recall_counts(num_gt)
    ranked = _rank(dets, matches, num_k)
    for m, max_det in enumerate(MAX_DETS):
        kept = ranked if max_det >= MAX_DETS[-1] else ranked.first(max_det)
        for a in range(num_a):
            p, r, s = _area_curves(kept, a, counts[:, a], num_gt[:, a])
            has_gt = num_gt[:, a] > 0  # pycocotools leaves the others at -1
            precision[:, :, has_gt, a, m] = p[:, :, has_gt]
            recall[:, has_gt, a, m] = r[:, has_gt]
            scores[:, :, has_gt, a, m] = s[:, :, has_gt]
    return Curves(precision, recall, scores, num_gt)


def _recall_counts(num_gt: np.ndarray) -> np.ndarray:
    """``[K, A, R]``: the fewest true positives whose recall reaches each threshold.

    pycocotools reads the first detection whose float recall ``tp / num_gt`` is at least the
    threshold; ``tp`` grows by one per true positive, so that is where ``tp`` reaches the
    smallest count ``c`` with ``c / num_gt >= threshold`` (the same float division).
    """
    out = np.zeros((*num_gt.shape, len(REC_THRESHOLDS)), dtype=np.int64)
    for n in sorted(set(num_gt[num_gt > 0].tolist())):
        out[num_gt == n] = np.searchsorted(np.arange(n + 1) / n, REC_THRESHOLDS, side="left")
    return out


def _rank(dets: Detections, matches: Matches, num_k: int) -> _Ranked:
    """Every detection in ``matches.det`` in pycocotools' order."""
    cat, score = dets.cat[matches.det], dets.score[matches.det]
    order = matches.order
    slot = np.empty_like(order)  # where each detection lands
    slot[order] = np.arange(len(order))
    by_slot = np.argsort(slot[matches.hits])
    hit_pos = slot[matches.hits][by_slot]
    tp_like, ignored = matches.tp_like[:, :, by_slot], matches.ignored[:, :, by_slot]
    unmatched = np.ones(len(order), dtype=bool)
    unmatched[hit_pos] = False
    cat = cat[order]
    return _Ranked(
        cat=cat,
        score=score[order],
        rank=matches.rank[order],
        bounds=np.searchsorted(cat, np.arange(num_k + 1)),
        hit_pos=hit_pos,
        tp=tp_like & ~ignored,
        fp=~tp_like & ~ignored,
        other_fp=unmatched & ~outside(dets.area[matches.det[order]]),
    )


def _area_curves(ranked: _Ranked, a: int, counts: np.ndarray, num_gt: np.ndarray):
    """One area range -> ``(precision [T, R, K], recall [T, K], scores [T, R, K])``.

    Args:
        ranked: the detections in order; a: the area range's index.
        counts: ``[K, R]`` the true positives reaching each recall threshold.
        num_gt: ``[K]`` non-ignored gts (values for categories without any are meaningless).
    """
    tp, fp, pos = ranked.tp[a], ranked.fp[a], ranked.hit_pos
    num_t, num_k = tp.shape[0], len(ranked.bounds) - 1
    # every true positive (row-major: threshold, then category, then score order)
    t_e, j_e = np.nonzero(tp)
    k_e, i_e = ranked.cat[pos[j_e]], pos[j_e]
    # false positives before it in its category: unmatched ones, and matched ones at t
    other = _running(ranked.other_fp[a])
    hit_bounds = np.searchsorted(ranked.cat[pos], np.arange(num_k + 1))
    matched = _running(fp)  # [T, H + 1]
    fp_e = (other[i_e + 1] - other[ranked.bounds[k_e]]) + (
        matched[t_e, j_e + 1] - matched[t_e, hit_bounds[k_e]]
    )
    # each (threshold, category) is a segment of the true positives; c: the count so far
    segment = t_e * num_k + k_e
    n_tp = np.bincount(segment, minlength=num_t * num_k)
    start = np.cumsum(n_tp) - n_tp
    c = np.arange(len(segment)) - start[segment] + 1
    pr = c / (fp_e + c + np.spacing(1))  # pycocotools' tp / (fp + tp + eps)
    # the true positive each recall threshold is read at: the c-th (the first for c = 0)
    n = n_tp.reshape(num_t, num_k, 1)
    reached = (counts[None] <= n) & (n > 0)  # [T, K, R]
    query = (start.reshape(num_t, num_k, 1) + np.maximum(counts[None] - 1, 0))[reached]
    precision = np.zeros(reached.shape)
    at_score = np.zeros(reached.shape)
    precision[reached] = _max_to_the_right(pr, segment, start, query)
    at_score[reached] = ranked.score[i_e[query]]
    # recall 0 reads the category's first detection, whatever it is
    first = ranked.bounds[:-1]
    some = ranked.bounds[1:] > first
    at_score[:, some, 0] = ranked.score[first[some]]
    recall = n_tp.reshape(num_t, num_k) / np.maximum(num_gt, 1)
    return precision.transpose(0, 2, 1), recall, at_score.transpose(0, 2, 1)


def _running(flags: np.ndarray) -> np.ndarray:
    """Inclusive running counts of ``flags [..., n]`` with a 0 in front: ``[..., n + 1]``."""
    out = np.zeros((*flags.shape[:-1], flags.shape[-1] + 1), dtype=np.int64)
    np.cumsum(flags, axis=-1, out=out[..., 1:])
    return out


def _max_to_the_right(
    values: np.ndarray, segment: np.ndarray, start: np.ndarray, query: np.ndarray
) -> np.ndarray:
    """``max(values[q:end of q's segment])`` for each ``q`` of ``query``.

    Args:
        values: ``[E]`` grouped by ``segment [E]`` (sorted); start: ``[S]`` each segment's
            first index; query: ``[Q]`` sorted indices into ``values``, including every
            non-empty segment's start.

    The queries cut the segments into blocks: each block's maximum (one ``reduceat``), then
    a running maximum from the right over the few blocks of each segment.
    """
    if len(query) == 0:
        return np.zeros(0)
    new = np.r_[True, query[1:] != query[:-1]]
    cuts = query[new]
    block = np.maximum.reduceat(values, cuts)
    seg = segment[cuts]
    # each block's place in its segment: segments start with a cut (their start is a query)
    first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    col = np.arange(len(cuts)) - np.repeat(first, np.diff(np.r_[first, len(cuts)]))
    table = np.full((len(start), int(col.max()) + 1), -1.0)
    table[seg, col] = block
    table = np.maximum.accumulate(table[:, ::-1], axis=1)[:, ::-1]
    where = np.cumsum(new) - 1  # the cut each query is
    return table[seg[where], col[where]]
