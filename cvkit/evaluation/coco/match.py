"""Greedy IoU matching of detections to ground truth, exactly as pycocotools' ``evaluateImg``,
for every (image, category) pair, area range and IoU threshold at once.

pycocotools walks each pair's detections in score order and gives each the best still-free
gt with IoU >= t, preferring gts that are not ignored (crowd, or area outside the range) and,
among equal IoUs, the last gt; crowd gts are never used up. A detection's match depends on
the detections before it, so the walk stays sequential over the detection rank, but each step
is one array operation over all pairs x area ranges x thresholds. Pairs are bucketed by their
number of gts (padded to a power of two) so padding stays small. Pairs with one gt, most of
them, need no walk: at each threshold the first detection reaching it takes the gt.
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
    ``A`` and threshold ``T``; flags are kept only for the ``H`` detections that match a gt
    somewhere (the others are false positives, or ignored where their area is outside the
    range: :func:`outside`).

    Attributes:
        det: ``[D]`` indices into the ``Detections`` rows, sorted by pair then score.
        rank: ``[D]`` the detection's rank within its (image, category) pair.
        order: ``[D]`` positions in ``det`` in pycocotools' ``accumulate`` order: category,
            score (high first), image, rank.
        hits: ``[H]`` positions in ``det`` of the detections matched at some ``A``, ``T``.
        tp_like: ``[A, T, H]`` bool, matched to a gt whose id is not 0 (pycocotools' ``dtm``).
        ignored: ``[A, T, H]`` bool, pycocotools' ``dtIgnore``.
        gt_ignored: ``[A, N]`` bool, each gt's ``_ignore`` in each area range.
    """

    det: np.ndarray
    rank: np.ndarray
    order: np.ndarray
    hits: np.ndarray
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
    """Match every detection (see the module docstring). ``segm_iou(det_rows [D], gt_rows
    [D, G], valid [D, G])`` gives mask IoUs ``[D, G]`` instead of box IoUs (``segm``): each
    detection's with the gts of its pair, for every pair with the same number of gts at
    once."""
    num_k = len(gt.cat_ids)
    det, rank, order = _best_per_pair(dets, num_k)
    gt_ign = _gt_ignored(gt)
    num_a, num_t = len(AREA_RANGES), len(IOU_THRESHOLDS)
    empty = np.zeros((num_a, num_t, 0), dtype=bool)
    positions, tp_like, ignored = [np.zeros(0, np.int64)], [empty], [empty]
    det_pair = dets.image[det] * num_k + dets.cat[det]  # sorted
    gt_pair = gt.image * num_k + gt.cat
    gt_order = np.argsort(gt_pair, kind="stable")  # file order within a pair
    pairs = _common(det_pair, gt_pair[gt_order])  # the pairs with both
    gt_start, gt_count = _spans(gt_pair[gt_order], pairs)
    pair_of_det = np.searchsorted(pairs, det_pair)
    has_gt = pair_of_det < len(pairs)
    has_gt[has_gt] = pairs[pair_of_det[has_gt]] == det_pair[has_gt]
    rows, pair_of_row = np.flatnonzero(has_gt), pair_of_det[has_gt]  # positions in `det`
    size = _pow2(gt_count)
    for g in sorted(set(size.tolist())):  # np.unique would import numpy.ma (15 ms)
        in_bucket = np.flatnonzero(size == g)  # sorted pair indices
        pick = size[pair_of_row] == g
        local = np.searchsorted(in_bucket, pair_of_row[pick])
        g_idx = gt_order[_padded(gt_start[in_bucket], gt_count[in_bucket], int(g), fill=0)]
        g_valid = np.arange(g) < gt_count[in_bucket][:, None]
        iou = _ious(gt, dets, det[rows[pick]], local, g_idx, g_valid, segm_iou)
        hits, found = _walk(iou, local, gt_ign[:, g_idx] | ~g_valid, gt.crowd[g_idx] & g_valid)
        gt_row = np.where(found >= 0, g_idx[local[hits], np.maximum(found, 0)], -1)
        positions.append(rows[pick][hits])
        tp, ign = _flags(gt, gt_ign, dets.area[det[positions[-1]]], gt_row)
        tp_like.append(tp)
        ignored.append(ign)
    return Matches(
        det, rank, order, np.concatenate(positions), np.concatenate(tp_like, 2),
        np.concatenate(ignored, 2), gt_ign,
    )  # fmt: skip


def _flags(
    gt: GroundTruth, gt_ign: np.ndarray, det_area: np.ndarray, gt_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``dtm`` (as truth) and ``dtIgnore`` of matched detections, ``[A, T, H]``.

    Args:
        gt_ign: ``[A, N]``; det_area: ``[H]`` the detections' areas.
        gt_row: ``[A, T, H]`` the gt each matched (a row of ``gt``) or -1; ``[T, H]`` where
            the matches are the same in every area range.
    """
    hit = gt_row >= 0
    safe = np.maximum(gt_row, 0)
    tp = hit & (gt.ann_id[safe] != 0)  # pycocotools truth-tests the matched gt's id
    if gt_row.ndim == 2:
        hit_ignored = hit & gt_ign[:, safe]
    else:
        rows = np.take_along_axis(gt_ign, safe.reshape(len(gt_ign), -1), 1)
        hit_ignored = hit & rows.reshape(safe.shape)
    ignored = hit_ignored | (~tp & outside(det_area)[:, None, :])
    return np.broadcast_to(tp, ignored.shape), ignored


def _ious(gt, dets, det_rows, local, g_idx, g_valid, segm_iou) -> np.ndarray:
    """Each detection's IoU with every gt of its pair, ``[D, G]``; ``-1`` for padding."""
    crowd = gt.crowd[g_idx] & g_valid
    if segm_iou is None:
        iou = bbox_iou(dets.box[det_rows][:, None, :], gt.box[g_idx[local]], crowd[local])[:, 0]
    else:
        iou = segm_iou(det_rows, g_idx[local], g_valid[local])
    return np.where(g_valid[local], iou, -1.0)


def _walk(
    iou: np.ndarray, local: np.ndarray, ign: np.ndarray, crowd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``_greedy`` over the detections that have some IoU >= the lowest threshold; keep
    the ones that matched somewhere.

    The others can never match, and leaving them out changes no decision: the walk's order
    and the "last of equal IoUs" rule only compare the ones left. In typical results most
    low-scoring detections overlap nothing, so the walk gets several times shorter. Pairs are
    grouped by how many such detections they have (a power of two), to keep padding small.

    Args:
        iou: ``[D, G]`` per detection (sorted by pair, then score); local: ``[D]`` its pair
            (an index into ``ign`` / ``crowd``); ign: ``[A, P, G]``; crowd: ``[P, G]``.

    Returns:
        ``(hits [H], found [A, T, H])``: the detections that matched at some area range and
        threshold (indices into ``iou``'s rows) and the gt each matched (an index into ``G``)
        or ``-1``; ``found`` is ``[T, H]`` for one gt per pair (the same in every range).
    """
    num_a, num_p, num_g = ign.shape
    close = np.flatnonzero((iou >= IOU_THRESHOLDS[0]).any(axis=1))
    if num_g == 1:  # most pairs: one gt, no walk needed
        found = _single_gt(iou[close, 0], local[close], crowd[:, 0])
        hit = (found >= 0).any(axis=0)
        return close[hit], found[:, hit]
    out = np.full((num_a, len(IOU_THRESHOLDS), len(close)), -1, dtype=np.int64)
    if len(close) == 0:
        return close, out
    pair = local[close]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    lengths = np.diff(np.r_[starts, len(pair)])
    step = np.arange(len(pair)) - np.repeat(starts, lengths)  # rank among the close ones
    count = np.bincount(pair, minlength=num_p)
    size = _pow2(count)
    for d in sorted(set(size[count > 0].tolist())):
        group = np.flatnonzero((size == d) & (count > 0))
        pick = size[pair] == d
        where = np.searchsorted(group, pair[pick])
        dense = np.full((len(group), int(d), num_g), -1.0)
        dense[where, step[pick]] = iou[close[pick]]
        found = _greedy(dense, ign[:, group], crowd[group], count[group])
        out[:, :, pick] = found[:, :, where, step[pick]]
    hit = (out >= 0).any(axis=(0, 1))
    return close[hit], out[:, :, hit]


def _single_gt(iou: np.ndarray, pair: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``_greedy``'s result for pairs with one gt, without walking: at each threshold the
    first detection (in score order) reaching it takes the gt, and every one does for a crowd.
    Which gts are ignored cannot change the choice: every area range matches alike.

    Args:
        iou: ``[C]`` each detection's IoU with its pair's gt; pair: ``[C]`` its pair (sorted,
            detections in score order within one); crowd: ``[P]`` whether the gt is a crowd.

    Returns:
        ``[T, C]``: 0 (the pair's only gt) where matched, else ``-1``.
    """
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]
    reach = iou[None, :] >= thr  # [T, C]
    seen = _segment_cumsum(reach, pair)
    hit = reach & ((seen == 1) | crowd[pair][None, :])
    return np.where(hit, 0, -1)


def _segment_cumsum(flags: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """``[T, C]`` running counts of ``flags`` along ``C`` that restart where the sorted
    ``segment [C]`` changes."""
    total = np.cumsum(flags, axis=1, dtype=np.int32)
    if flags.shape[1] == 0:
        return total
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    before = total[:, starts] - flags[:, starts]
    return total - np.repeat(before, np.diff(np.r_[starts, len(segment)]), axis=1)


def _best_per_pair(dets: Detections, num_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections sorted by pair (image, then category), then score (high first), then file
    order; the best ``MAX_DETS[-1]`` of each pair: ``(rows [D], rank within pair [D], order
    [D])``, ``order`` being ``accumulate``'s (see ``Matches``).

    Both orders come from one sort by score and stable sorts by small integers (radix sorts,
    a millisecond each), not from two sorts on several keys.
    """
    by_score = _stable_argsort(dets.image)  # image, then file order
    by_score = by_score[np.argsort(-dets.score[by_score], kind="stable")]
    by_cat = by_score[_stable_argsort(dets.cat[by_score])]  # category, score, image, file
    order = by_cat[_stable_argsort(dets.image[by_cat])]  # image, category, score, file
    pair = dets.image[order] * num_k + dets.cat[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, int)
    rank = np.arange(len(pair)) - np.repeat(starts, np.diff(np.r_[starts, len(pair)]))
    keep = rank < MAX_DETS[-1]
    rows = order[keep]
    position = np.full(len(order), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    ranked = position[by_cat]
    return rows, rank[keep], ranked[ranked >= 0]


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` for non-negative integers, as a radix sort on 16
    bits when they fit."""
    if len(values) and values.min() >= 0 and values.max() < 2**16:
        values = values.astype(np.uint16)
    return np.argsort(values, kind="stable")


def _gt_ignored(gt: GroundTruth) -> np.ndarray:
    """``[A, N]``: crowd, or area outside the range (pycocotools' ``_ignore``)."""
    return gt.crowd[None, :] | outside(gt.area)


def outside(area: np.ndarray) -> np.ndarray:
    """``[A, N]``: each area outside each area range (a detection matching nothing there is
    ignored, pycocotools' ``dtIgnore``; for a gt, ``_ignore``)."""
    lo = np.array([r[0] for r in AREA_RANGES], dtype=np.float64)[:, None]
    hi = np.array([r[1] for r in AREA_RANGES], dtype=np.float64)[:, None]
    return (area[None, :] < lo) | (area[None, :] > hi)


def _common(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The values in both sorted arrays, once each (``np.intersect1d`` without its sorts)."""
    a = a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a
    where = np.minimum(np.searchsorted(b, a), max(len(b) - 1, 0))
    return a[b[where] == a] if len(b) else a[:0]


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
