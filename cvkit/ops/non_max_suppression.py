"""Non-maximum suppression: greedy (torchvision's kernel), soft (Bodla et al. 2017) and DIoU.

Every function takes ``xyxy`` boxes ``Tensor[N, 4]`` and scores ``Tensor[N]``, and returns
int64 indices into them on their device, in the order the boxes were selected: by score,
descending, ties by index, ascending. ``labels`` (``Tensor[N]`` of integers), where given, keep
suppression within a class. Nothing here is differentiable.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torchvision.ops as tvops
from torch import Tensor

from cvkit.ops.boxes import check_boxes
from cvkit.ops.iou import EPS

__all__ = ["batched_nms", "diou_nms", "nms", "soft_nms"]


def _check_nms_inputs(boxes: Tensor, scores: Tensor, labels: Tensor | None) -> None:
    check_boxes(boxes, "boxes", min_dim=2)
    if boxes.ndim != 2:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    n = boxes.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape [{n}] to match boxes, got {list(scores.shape)}")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape [{n}] to match boxes, got {list(labels.shape)}")


def _work_dtype(boxes: Tensor, scores: Tensor) -> torch.dtype:
    # torchvision's CPU kernel has no float16 path, and class offsets overflow float16.
    return torch.float64 if torch.float64 in (boxes.dtype, scores.dtype) else torch.float32


def _by_score(keep: Tensor, scores: Tensor) -> Tensor:
    """``keep`` reordered by score, descending, ties by index (a stable sort of sorted indices)."""
    keep = keep.sort().values
    return keep[scores[keep].argsort(descending=True, stable=True)]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: drop every box whose IoU with a higher-scored kept box is > ``iou_threshold``.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        scores: ``Tensor[N]``.
        iou_threshold: boxes overlapping a kept box by more than this are dropped.

    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes, by score descending.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 1.9], [3.0, 3.0, 4.0, 4.0]])
        >>> nms(boxes, torch.tensor([0.8, 0.9, 0.3]), iou_threshold=0.5)
        tensor([1, 2])
    """
    _check_nms_inputs(boxes, scores, None)
    dtype = _work_dtype(boxes, scores)
    keep = tvops.nms(boxes.detach().to(dtype), scores.detach().to(dtype), iou_threshold)
    return _by_score(keep, scores)


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS within each class: boxes of different ``labels`` never suppress each other.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        scores: ``Tensor[N]``.
        labels: ``Tensor[N]`` integer class of each box.
        iou_threshold: boxes overlapping a kept box of their class by more than this are dropped.

    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes (all classes), by score descending.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 1.9], [0.0, 0.0, 2.0, 2.0]])
        >>> batched_nms(boxes, torch.tensor([0.8, 0.9, 0.3]), torch.tensor([0, 0, 1]), 0.5)
        tensor([1, 2])
    """
    _check_nms_inputs(boxes, scores, labels)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    dtype = _work_dtype(boxes, scores)
    work = boxes.detach().to(dtype)
    # torchvision separates classes by shifting class k by k * (max coordinate + 1), which is
    # too little when coordinates are negative; a translation to min 0 keeps every IoU.
    work = work - work.min()
    keep = tvops.batched_nms(work, scores.detach().to(dtype), labels, iou_threshold)
    # Above 1000 boxes on CPU torchvision loops over classes and its final sort breaks ties
    # arbitrarily.
    return _by_score(keep, scores)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    method: Literal["linear", "gaussian"] = "gaussian",
    score_threshold: float = 0.001,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017): decay overlapping scores instead of dropping boxes.

    Repeatedly select the box with the highest current score and multiply the score of every
    box of its class by ``1 - iou`` where ``iou > iou_threshold`` (``"linear"``) or by
    ``exp(-iou**2 / sigma)`` (``"gaussian"``, which ignores ``iou_threshold``). A box whose
    score is below ``score_threshold``, at the start or after a decay, is dropped. Each kept
    box costs one IoU row against all ``N`` boxes.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        scores: ``Tensor[N]``, non-negative.
        labels: ``Tensor[N]`` integer classes, or ``None`` for one class.
        iou_threshold: overlap above which ``"linear"`` decays a score.
        sigma: width of the ``"gaussian"`` decay, > 0.
        method: ``"linear"`` or ``"gaussian"``.
        score_threshold: boxes scoring below this are dropped.

    Returns:
        ``(keep, new_scores)``: ``Tensor[K]`` int64 indices in selection order, which is by new
        score descending (ties by index), and ``Tensor[K]`` their decayed scores.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 1.0], [3.0, 3.0, 4.0, 4.0]])
        >>> keep, new_scores = soft_nms(boxes, torch.tensor([0.9, 0.8, 0.3]), method="linear")
        >>> keep, new_scores
        (tensor([0, 1, 2]), tensor([0.9000, 0.4000, 0.3000]))
    """
    _check_nms_inputs(boxes, scores, labels)
    if method not in ("linear", "gaussian"):
        raise ValueError(f"method must be 'linear' or 'gaussian', got {method!r}")
    if method == "gaussian" and not sigma > 0:
        raise ValueError(f"sigma must be > 0 for the gaussian method, got {sigma}")
    dtype = _work_dtype(boxes, scores)
    with np.errstate(all="ignore"):  # -inf * 0 at selected boxes: NaN, silently as in torch
        keep, kept_scores = _SoftNMS(
            boxes.detach().to(dtype).cpu().numpy(),
            scores.detach().to(dtype).cpu().numpy(),
            None if labels is None else labels.detach().cpu().numpy(),
            method,
            float(iou_threshold),
            float(sigma),
            float(score_threshold),
        ).run()
    return (
        torch.tensor(keep, dtype=torch.int64, device=boxes.device),
        torch.tensor(kept_scores, dtype=scores.dtype, device=scores.device),
    )


def diou_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor | None = None, iou_threshold: float = 0.5
) -> Tensor:
    """Greedy NMS by DIoU (Zheng et al. 2020): overlap minus normalised centre distance.

    A box is dropped when its DIoU with a higher-scored kept box of its class is
    > ``iou_threshold``, so heavily overlapping boxes whose centres lie apart (two objects
    side by side) are kept more often than by plain IoU. Each kept box costs one DIoU row
    against the boxes still in the running.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        scores: ``Tensor[N]``.
        labels: ``Tensor[N]`` integer classes, or ``None`` for one class.
        iou_threshold: DIoU above which a box is dropped.

    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes, by score descending (ties by index).

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 0.0, 5.0, 4.0], [0.0, 0.0, 4.0, 3.5]])
        >>> scores = torch.tensor([0.9, 0.8, 0.7])
        >>> diou_nms(boxes, scores, iou_threshold=0.59)  # box 1: IoU 0.6, DIoU 0.58
        tensor([0, 1])
        >>> nms(boxes, scores, iou_threshold=0.59)
        tensor([0])
    """
    _check_nms_inputs(boxes, scores, labels)
    order = scores.detach().argsort(descending=True, stable=True).cpu().numpy()
    work = boxes.detach().to(_work_dtype(boxes, scores)).cpu().numpy()[order]
    with np.errstate(all="ignore"):  # NaN or inf boxes give NaN as in torch, silently
        kept = _diou_nms_loop(
            work,
            None if labels is None else labels.detach().cpu().numpy()[order],
            float(iou_threshold),
        )
    return torch.tensor(order[kept].tolist(), dtype=torch.int64, device=boxes.device)


# -- soft-NMS and DIoU-NMS loops -------------------------------------------------------------
# Both pick one box at a time, so they loop in Python. Each step is a few NumPy calls on [N]
# arrays: a torch call costs several times more at this size, and some start threads, which on
# a busy machine can wait milliseconds for a core. The IoU or DIoU of the boxes the loop visits
# is computed a block of rows at a time, [B, M], so that NumPy's per-call cost is paid once per
# block rather than once per box. Every value is computed with the same float operations in the
# same order as cvkit.ops.iou: the results are those of one torch row per kept box to the last
# bit, but for the gaussian's exp (see _SoftNMS._block).

_SOFT_BLOCK = 12  # rows per soft-NMS block: 8-16 were within noise of each other (1,000 boxes)
_DIOU_BLOCK = 16  # boxes per DIoU-NMS block
_DENSE = 0.75  # a soft-NMS block spans every box while more than this share is in the running


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[4, N]`` rows ``x2, y2, -x1, -y1`` and ``[N]`` areas of ``[N, 4]`` xyxy boxes.

    With ``-x1`` stored, one ``minimum`` of two boxes gives ``min(x2), min(y2), -max(x1),
    -max(y1)``; the sum of its halves is ``min(x2) - max(x1)`` etc. to the last bit.
    """
    x1, y1, x2, y2 = boxes.T
    return np.stack([x2, y2, -x1, -y1]), (x2 - x1) * (y2 - y1)


def _iou_block(
    cols: np.ndarray, cols_area: np.ndarray, rows: np.ndarray, rows_area: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """IoU ``[B, M]`` of ``rows`` (corners ``[B, 4, 1]``) with ``cols`` (corners ``[4, M]``),
    and the ``[B, 4, M]`` buffer of corner minima, free for the caller to reuse."""
    low = np.minimum(cols, rows)
    sides = low[:, :2] + low[:, 2:]  # the intersections' widths and heights
    np.maximum(sides, 0, out=sides)
    inter = sides[:, 0] * sides[:, 1]
    union = cols_area + rows_area[:, None]
    union -= inter
    np.maximum(union, EPS, out=union)
    inter /= union
    return inter, low


class _SoftNMS:
    """Soft-NMS on ``[N, 4]`` boxes and ``[N]`` scores: ``run()`` gives the kept indices and
    their scores. A selected box's score becomes -inf. The IoU row of a box is computed, with
    those of the next highest-scoring boxes, the first time one of them is selected."""

    def __init__(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray | None,
        method: str,
        iou_threshold: float,
        sigma: float,
        score_threshold: float,
    ) -> None:
        self.corners, self.areas = _corners(boxes)
        self.current, self.labels = scores.copy(), labels
        self.gaussian, self.sigma = method == "gaussian", sigma
        self.iou_threshold, self.score_threshold = iou_threshold, score_threshold
        self.alive = np.ones(len(scores), dtype=bool)
        self.has_row = np.zeros(len(scores), dtype=bool)
        # box -> (the boxes it decays, None for all; its factor for each)
        self.rows: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}

    def run(self) -> tuple[list[int], list[float]]:
        current, alive = self.current, self.alive
        keep: list[int] = []
        kept_scores: list[float] = []
        for _ in range(len(current)):
            best = int(current.argmax())
            if not alive[best]:  # a selected box's -inf times a factor of 0 gave NaN
                current[~alive] = -np.inf
                best = int(current.argmax())
            best_score = float(current[best])
            # Scores only decrease, so once the best is below the threshold all the rest are.
            if not (alive[best] and best_score >= self.score_threshold):
                break
            keep.append(best)
            kept_scores.append(best_score)
            if not self.has_row[best]:
                self._block(best)
            cols, factors = self.rows.pop(best)
            if cols is None:
                current *= factors
            else:
                current[cols] *= factors
            current[best] = -np.inf
            alive[best] = False
        return keep, kept_scores

    def _block(self, best: int) -> None:
        """The rows of ``best`` and of the next highest-scoring boxes without one."""
        current, threshold = self.current, self.score_threshold
        # With a positive threshold a box below it can never be selected: leave it out.
        cols = np.flatnonzero(current >= threshold if threshold > 0 else self.alive)
        wanted = np.where(self.has_row[cols], -np.inf, current[cols])
        k = min(_SOFT_BLOCK, len(cols))
        picked = np.argpartition(wanted, len(cols) - k)[len(cols) - k :]
        rows = cols[picked[wanted[picked] > -np.inf]]
        if best not in rows:  # more than a block's worth of boxes tie with it
            rows = np.append(rows, best)
        dense = len(cols) > _DENSE * len(current)
        corners, areas, labels = self.corners, self.areas, self.labels
        if not dense:
            corners, areas = corners.take(cols, axis=1), areas[cols]
            labels = None if labels is None else labels[cols]
        iou, _ = _iou_block(corners, areas, self.corners.T[rows][:, :, None], self.areas[rows])
        if self.labels is not None:  # other classes are not decayed
            iou[self.labels[rows, None] != labels] = 0
        if self.gaussian:
            iou *= iou
            iou /= -self.sigma  # -(iou**2) / sigma
            # NumPy's float32 exp differs from torch's in the last bit for most values; taken
            # in float64 and rounded, it agrees with torch's for about 99 values in 100.
            block = np.exp(iou, dtype=np.float64).astype(iou.dtype)
        else:
            block = np.where(iou > self.iou_threshold, 1 - iou, 1)
        self.has_row[rows] = True
        for j, row in zip(rows.tolist(), block, strict=True):
            self.rows[j] = (None if dense else cols, row)


def _diou_nms_loop(boxes: np.ndarray, labels: np.ndarray | None, iou_threshold: float) -> list[int]:
    """Greedy DIoU-NMS of ``[N, 4]`` boxes sorted by score: the positions kept, in order.

    The DIoU of the next ``_DIOU_BLOCK`` boxes still in the running with every box after them
    is one block; within it each box, unless an earlier one suppressed it, is kept and
    suppresses its row.
    """
    corners, areas = _corners(boxes)
    centre_sums = (boxes[:, :2] + boxes[:, 2:])[:, :, None]  # [N, 2, 1]: x1 + x2, y1 + y2
    removed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    start = 0
    while start < len(boxes):
        cols = np.flatnonzero(~removed[start:]) + start
        if not len(cols):
            break
        rows = cols[:_DIOU_BLOCK]
        block = (corners.take(cols, axis=1), areas[cols], corners.T[rows][:, :, None])
        suppress = _diou_block(*block, areas[rows], centre_sums[rows]) > iou_threshold
        if labels is not None:
            suppress &= labels[cols] == labels[rows, None]
        for row, hits in zip(rows.tolist(), suppress, strict=True):
            if not removed[row]:
                keep.append(row)
                removed[cols[hits]] = True
        start = int(rows[-1]) + 1
    return keep


def _diou_block(
    cols: np.ndarray,
    cols_area: np.ndarray,
    rows: np.ndarray,
    rows_area: np.ndarray,
    rows_centre_sums: np.ndarray,
) -> np.ndarray:
    """DIoU ``[B, M]`` of ``rows`` with ``cols`` (see ``_iou_block``); ``rows_centre_sums``
    ``[B, 2, 1]`` are their ``x1 + x2, y1 + y2``."""
    iou, low = _iou_block(cols, cols_area, rows, rows_area)
    high = np.maximum(cols, rows, out=low)
    sides = high[:, :2] + high[:, 2:]  # the enclosing boxes' widths and heights
    sides *= sides
    diagonal = sides[:, 0] + sides[:, 1]
    np.maximum(diagonal, EPS, out=diagonal)
    offset = cols[2:] + rows_centre_sums  # x1 + x2 - u1 - u2, with x the row's box
    offset -= cols[:2]
    offset *= offset
    distance = offset[:, 0] + offset[:, 1]
    distance /= 4
    distance /= diagonal
    iou -= distance
    return iou
