"""Greedy IoU matching of detections to ground truth, exactly as pycocotools' ``evaluateImg``,
for every (image, category) pair, area range and IoU threshold at once.

pycocotools walks each pair's detections in score order and gives each the best still-free
gt with IoU >= t, preferring gts that are not ignored (crowd, or area outside the range) and,
among equal IoUs, the last gt; crowd gts are never used up. A detection's match depends on
the detections before it, so the walk stays sequential over the detection rank, but each step
is one array operation over all pairs x area ranges x thresholds. Pairs are bucketed by their
number of gts (padded to a power of two) so padding stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cvkit.evaluation.coco.load import Detections, GroundTruth

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
AREA_RANGES = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_NAMES = ("all", "small", "medium", "large")
MAX_DETS = (1, 10, 100)

IouFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Matches:
    """Per detection (only the best ``MAX_DETS[-1]`` of each pair are kept), per area range
    ``A`` and threshold ``T``.

    Attributes:
        det: ``[D]`` indices into the ``Detections`` rows, sorted by pair then score.
        rank: ``[D]`` the detection's rank within its (image, category) pair.
        tp_like: ``[A, T, D]`` bool, matched to a gt whose id is not 0 (pycocotools' ``dtm``).
        ignored: ``[A, T, D]`` bool, pycocotools' ``dtIgnore``.
        gt_ignored: ``[A, N]`` bool, each gt's ``_ignore`` in each area range.
    """

    det: np.ndarray
    rank: np.ndarray
    tp_like: np.ndarray
    ignored: np.ndarray
    gt_ignored: np.ndarray


def bbox_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` in the same float64 operations, so thresholds cut identically.

    Args: dt ``[..., D, 4]`` and gt ``[..., G, 4]`` xywh; crowd ``[..., G]`` bool (the union
    of a crowd gt is the detection's own area). Returns ``[..., D, G]``.
    """
    d, g = dt[..., :, None, :], gt[..., None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    det_area = d[..., 2] * d[..., 3]
    union = np.where(crowd[..., None, :], det_area, det_area + g[..., 2] * g[..., 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def match(gt: GroundTruth, dets: Detections, segm_iou: IouFn | None = None) -> Matches:
    """Match every detection (see the module docstring). ``segm_iou(det_rows, gt_rows,
    crowd)`` gives one pair's mask IoUs ``[D, G]`` instead of box IoUs (``segm``)."""
    num_k = len(gt.cat_ids)
    det, rank = _best_per_pair(dets, num_k)
    gt_ign = _gt_ignored(gt)
    num_a, num_t = len(AREA_RANGES), len(IOU_THRESHOLDS)
    positions, found_gts = [np.zeros(0, np.int64)], [np.zeros((num_a, num_t, 0), np.int64)]
    det_pair = dets.image[det] * num_k + dets.cat[det]  # sorted
    gt_pair = gt.image * num_k + gt.cat
    gt_order = np.argsort(gt_pair, kind="stable")  # file order within a pair
    pairs = np.intersect1d(det_pair, gt_pair)  # the pairs with both
    gt_start, gt_count = _spans(gt_pair[gt_order], pairs)
    pair_of_det = np.searchsorted(pairs, det_pair)
    has_gt = pair_of_det < len(pairs)
    has_gt[has_gt] = pairs[pair_of_det[has_gt]] == det_pair[has_gt]
    rows, pair_of_row = np.flatnonzero(has_gt), pair_of_det[has_gt]  # positions in `det`
    size = _pow2(gt_count)
    for g in np.unique(size):
        in_bucket = np.flatnonzero(size == g)  # sorted pair indices
        pick = size[pair_of_row] == g
        local = np.searchsorted(in_bucket, pair_of_row[pick])
        g_idx = gt_order[_padded(gt_start[in_bucket], gt_count[in_bucket], int(g), fill=0)]
        g_valid = np.arange(g) < gt_count[in_bucket][:, None]
        iou = _ious(gt, dets, det[rows[pick]], local, g_idx, g_valid, segm_iou)
        close, found = _walk(iou, local, gt_ign[:, g_idx] | ~g_valid, gt.crowd[g_idx] & g_valid)
        positions.append(rows[pick][close])
        found_gts.append(np.where(found >= 0, g_idx[local[close], np.maximum(found, 0)], -1))
    return _flags(
        gt, dets, det, rank, gt_ign, np.concatenate(positions), np.concatenate(found_gts, 2)
    )


def _flags(gt, dets, det, rank, gt_ign, positions, found) -> Matches:
    """pycocotools' ``dtm`` (as truth) and ``dtIgnore`` for every detection, from the matches
    ``found [A, T, C]`` (gt row or -1) of the detections at ``positions [C]``."""
    num_a, num_t = found.shape[:2]
    outside = _outside(dets.area[det])  # [A, D]: unmatched detections outside the range
    ignored = np.repeat(outside[:, None, :], num_t, axis=1)
    tp_like = np.zeros_like(ignored)
    hit = found >= 0
    safe = np.maximum(found, 0)
    tp = hit & (gt.ann_id[safe] != 0)  # pycocotools truth-tests the matched gt's id
    hit_ignored = hit & np.take_along_axis(gt_ign, safe.reshape(num_a, -1), 1).reshape(safe.shape)
    tp_like[:, :, positions] = tp
    ignored[:, :, positions] = hit_ignored | (~tp & outside[:, None, positions])
    return Matches(det, rank, tp_like, ignored, gt_ign)


def _ious(gt, dets, det_rows, local, g_idx, g_valid, segm_iou) -> np.ndarray:
    """Each detection's IoU with every gt of its pair, ``[D, G]``; ``-1`` for padding."""
    crowd = gt.crowd[g_idx] & g_valid
    if segm_iou is None:
        iou = bbox_iou(dets.box[det_rows][:, None, :], gt.box[g_idx[local]], crowd[local])[:, 0]
    else:
        iou = np.zeros((len(det_rows), g_idx.shape[1]))
        starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(local)]):
            p = local[a]
            ok = g_valid[p]
            iou[a:b, : ok.sum()] = segm_iou(det_rows[a:b], g_idx[p][ok], crowd[p][ok])
    return np.where(g_valid[local], iou, -1.0)


def _walk(
    iou: np.ndarray, local: np.ndarray, ign: np.ndarray, crowd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``_greedy`` over the detections that have some IoU >= the lowest threshold.

    The others can never match, and leaving them out changes no decision: the walk's order
    and the "last of equal IoUs" rule only compare the ones left. In typical results most
    low-scoring detections overlap nothing, so the walk gets several times shorter. Pairs are
    grouped by how many such detections they have (a power of two), to keep padding small.

    Args:
        iou: ``[D, G]`` per detection (sorted by pair, then score); local: ``[D]`` its pair
            (an index into ``ign`` / ``crowd``); ign: ``[A, P, G]``; crowd: ``[P, G]``.

    Returns:
        ``(close [C], found [A, T, C])``: the detections walked (indices into ``iou``'s rows)
        and the gt each matched (an index into ``G``) or ``-1``.
    """
    num_a, num_p, num_g = ign.shape
    close = np.flatnonzero((iou >= IOU_THRESHOLDS[0]).any(axis=1))
    out = np.full((num_a, len(IOU_THRESHOLDS), len(close)), -1, dtype=np.int64)
    if len(close) == 0:
        return close, out
    pair = local[close]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    lengths = np.diff(np.r_[starts, len(pair)])
    step = np.arange(len(pair)) - np.repeat(starts, lengths)  # rank among the close ones
    count = np.bincount(pair, minlength=num_p)
    size = _pow2(count)
    for d in np.unique(size[count > 0]):
        group = np.flatnonzero((size == d) & (count > 0))
        pick = size[pair] == d
        where = np.searchsorted(group, pair[pick])
        dense = np.full((len(group), int(d), num_g), -1.0)
        dense[where, step[pick]] = iou[close[pick]]
        found = _greedy(dense, ign[:, group], crowd[group], count[group])
        out[:, :, pick] = found[:, :, where, step[pick]]
    return close, out


def _best_per_pair(dets: Detections, num_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Detections sorted by pair, then score (high first), then file order; the best
    ``MAX_DETS[-1]`` of each pair: ``(rows [D], rank within pair [D])``."""
    pair = dets.image * num_k + dets.cat
    order = np.lexsort((np.arange(len(pair)), -dets.score, pair))
    pair = pair[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, int)
    rank = np.arange(len(pair)) - np.repeat(starts, np.diff(np.r_[starts, len(pair)]))
    keep = rank < MAX_DETS[-1]
    return order[keep], rank[keep]


def _gt_ignored(gt: GroundTruth) -> np.ndarray:
    """``[A, N]``: crowd, or area outside the range (pycocotools' ``_ignore``)."""
    return gt.crowd[None, :] | _outside(gt.area)


def _outside(area: np.ndarray) -> np.ndarray:
    lo = np.array([r[0] for r in AREA_RANGES], dtype=np.float64)[:, None]
    hi = np.array([r[1] for r in AREA_RANGES], dtype=np.float64)[:, None]
    return (area[None, :] < lo) | (area[None, :] > hi)


def _spans(sorted_keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each ``wanted`` key's run in ``sorted_keys``."""
    start = np.searchsorted(sorted_keys, wanted, side="left")
    return start, np.searchsorted(sorted_keys, wanted, side="right") - start


def _pow2(count: np.ndarray) -> np.ndarray:
    """Each count rounded up to a power of two (at least 1): group sizes with little padding."""
    return 1 << np.ceil(np.log2(np.maximum(count, 1))).astype(np.int64)


def _padded(start: np.ndarray, count: np.ndarray, width: int, fill: int = -1) -> np.ndarray:
    """``[P, width]`` of ``start + j`` for ``j < count``, else ``fill``."""
    j = np.arange(width)
    return np.where(j < count[:, None], start[:, None] + j, fill)


def _greedy(iou: np.ndarray, ign: np.ndarray, crowd: np.ndarray, det_count: np.ndarray):
    """The sequential walk over detection ranks for one bucket.

    Args:
        iou: ``[P, Dmax, G]``; ign: ``[A, P, G]``; crowd: ``[P, G]``; det_count: ``[P]``.

    Returns:
        ``[A, T, P, Dmax]`` the matched local gt index, ``-1`` if none.
    """
    num_a, num_p, num_g = ign.shape
    num_t, num_d = len(IOU_THRESHOLDS), iou.shape[1]
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None, None]
    taken = np.zeros((num_a, num_t, num_p, num_g), dtype=bool)
    out = np.full((num_a, num_t, num_p, num_d), -1, dtype=np.int64)
    order = np.argsort(-det_count, kind="stable")  # pairs with more detections first
    iou, ign, crowd, counts = iou[order], ign[:, order], crowd[order], det_count[order]
    for r in range(num_d):
        n = int(np.count_nonzero(counts > r))  # the pairs that still have a detection
        cand = iou[:n, r][None, None]  # [1, 1, n, G]
        free = (cand >= thr) & ~taken[:, :, :n]  # [A, T, n, G]
        regular = free & ~ign[:, None, :n]
        has_regular = regular.any(axis=3, keepdims=True)
        choose = np.where(has_regular, regular, free)
        score = np.where(choose, cand, -1.0)
        m = num_g - 1 - np.argmax(score[..., ::-1], axis=3)  # the last of equal best IoUs
        hit = choose.any(axis=3)
        out[:, :, order[:n], r] = np.where(hit, m, -1)
        used = (
            hit
            & ~np.take_along_axis(
                np.broadcast_to(crowd[:n], (num_a, num_t, n, num_g)), m[..., None], 3
            )[..., 0]
        )
        a, t, p = np.nonzero(used)
        taken[a, t, p, m[a, t, p]] = True
    return out
