"""Non-maximum suppression: greedy (torchvision's kernel), soft (Bodla et al. 2017) and DIoU.

Every function takes ``xyxy`` boxes ``Tensor[N, 4]`` and scores ``Tensor[N]``, and returns
int64 indices into them on their device, in the order the boxes were selected: by score,
descending, ties by index, ascending. ``labels`` (``Tensor[N]`` of integers), where given, keep
suppression within a class. Nothing here is differentiable.
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from cvkit.ops.boxes import check_boxes
from cvkit.ops.iou import EPS

_soft_nms_kernel: ModuleType | None
try:  # built by setup.py where a C compiler was found; otherwise soft-NMS runs in NumPy
    from cvkit.ops import _soft_nms as _soft_nms_kernel
except ImportError:  # pragma: no cover - depends on the install
    _soft_nms_kernel = None

# torchvision is imported by the functions that use it: importing it pulls in torch._dynamo
# (about 1.3 s), which commands that only read components (`cvkit config print`, `cvkit
# list`) would otherwise pay for nothing.

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
    import torchvision.ops as tvops

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
    import torchvision.ops as tvops

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
    box costs one IoU row against the boxes that can still be selected.

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
    work = np.ascontiguousarray(boxes.detach().to(dtype).cpu().numpy())
    work_scores = np.ascontiguousarray(scores.detach().to(dtype).cpu().numpy())
    work_labels = None if labels is None else labels.detach().cpu().numpy()
    args = (method, float(iou_threshold), float(sigma), float(score_threshold))
    keep: list[int] | np.ndarray
    kept_scores: list[float] | np.ndarray
    if _kernel_takes(work, work_scores, work_labels):
        keep, kept_scores = _soft_nms_compiled(work, work_scores, work_labels, *args)
    else:
        with np.errstate(all="ignore"):  # -inf * 0 at selected boxes: NaN, silently as in torch
            keep, kept_scores = _SoftNMS(work, work_scores, work_labels, *args).run()
    # torch.tensor of a list takes about 3x as long as NumPy's array and torch.from_numpy.
    return (
        torch.from_numpy(np.asarray(keep, dtype=np.int64)).to(boxes.device),
        torch.from_numpy(np.asarray(kept_scores, dtype=work.dtype)).to(scores.device, scores.dtype),
    )


def _well_formed(corners: np.ndarray, areas: np.ndarray, scores: np.ndarray) -> bool:
    """Whether every IoU lies in [0, 1] and every score is finite and >= 0, so that no decay
    raises a score or makes it NaN: boxes with ``x2 >= x1``, ``y2 >= y1`` and finite areas
    (``corners`` and ``areas`` from ``_corners``). A NaN fails ">= 0"."""
    sides_ok = (corners[:2] + corners[2:]).min(initial=0) >= 0
    scores_ok = scores.min(initial=0) >= 0 and scores.max(initial=0) < np.inf
    return bool(sides_ok and scores_ok and np.isfinite(areas).all())


def _kernel_takes(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray | None) -> bool:
    """Whether the compiled soft-NMS is there and gives the NumPy loop's result on these
    inputs: well-formed ones, with integer labels (it compares them as int64)."""
    if _soft_nms_kernel is None or (labels is not None and labels.dtype.kind not in "biu"):
        return False
    return _well_formed(*_corners(boxes), scores)


def _soft_nms_compiled(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None,
    method: str,
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``_SoftNMS(...).run()`` by the C loop of ``_soft_nms.c``: kept indices and scores."""
    n = len(scores)
    keep, kept = np.empty(n, dtype=np.int64), np.empty(n, dtype=scores.dtype)
    assert _soft_nms_kernel is not None  # checked by _kernel_takes
    count = _soft_nms_kernel.soft_nms(
        boxes,
        scores,
        None if labels is None else np.ascontiguousarray(labels, dtype=np.int64),
        scores.dtype == np.float64,
        method == "gaussian",
        iou_threshold,
        sigma,
        score_threshold,
        EPS,
        keep,
        kept,
    )
    return keep[:count], kept[:count]


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
# soft_nms runs the C loop of _soft_nms.c where the install built it (3-5x faster than this one
# on 1,000 dense boxes, bench/README.md) and the inputs are well formed; this NumPy loop
# otherwise, with the same results to the last bit (tests/test_boxes.py checks both).
# Both pick one box at a time, so they loop in Python. Each step is a few NumPy calls on [N]
# arrays: a torch call costs several times more at this size, and some start threads, which on
# a busy machine can wait milliseconds for a core. The IoU or DIoU of the boxes the loop visits
# is computed a block of rows at a time, [B, M], so that NumPy's per-call cost is paid once per
# block rather than once per box. Every value is computed with the same float operations in the
# same order as cvkit.ops.iou: the results are those of one torch row per kept box to the last
# bit, but for the gaussian's exp (see _SoftNMS._factors).

_SOFT_CANDIDATES = 64  # boxes a soft-NMS round looks ahead among: 48-96 within noise (1,000 boxes)
_DIOU_BLOCK = 16  # boxes per DIoU-NMS block
_DENSE = 0.75  # soft-NMS keeps its working set until this share or less can still be selected


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[4, N]`` rows ``x2, y2, -x1, -y1`` and ``[N]`` areas of ``[N, 4]`` xyxy boxes.

    With ``-x1`` stored, one ``minimum`` of two boxes gives ``min(x2), min(y2), -max(x1),
    -max(y1)``; the sum of its halves is ``min(x2) - max(x1)`` etc. to the last bit.
    """
    corners = boxes.T[[2, 3, 0, 1]]  # one gather: slicing the columns apart is slower
    np.negative(corners[2:], out=corners[2:])
    sides = corners[:2] + corners[2:]  # x2 - x1, y2 - y1 to the last bit
    return corners, sides[0] * sides[1]


def _iou_block(
    cols: np.ndarray, cols_area: np.ndarray, rows: np.ndarray, rows_area: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """IoU ``[B, M]`` of ``rows`` (corners ``[B, 4, 1]``) with ``cols`` (corners ``[4, M]``),
    and the ``[B, 4, M]`` buffer of corner minima, free for the caller to reuse."""
    low = np.minimum(cols, rows)
    sides = low[:, :2] + low[:, 2:]  # the intersections' widths and heights
    # NumPy's maximum of two arrays is about 3x as fast as that of an array and a scalar.
    np.maximum(sides, np.zeros_like(sides), out=sides)
    inter = sides[:, 0] * sides[:, 1]
    union = cols_area + rows_area[:, None]
    union -= inter
    np.maximum(union, np.full_like(union, EPS), out=union)
    inter /= union
    return inter, low


class _SoftNMS:
    """Soft-NMS on ``[N, 4]`` boxes and ``[N]`` scores: ``run()`` gives the kept indices and
    their scores. A selected box's score becomes -inf.

    It selects by rounds. A round takes the best box and then, as long as the order is certain,
    the next ones: among the ``_SOFT_CANDIDATES`` best boxes it decays the scores by their IoU
    with one another as each selection would, and goes on while the best of them stays strictly
    above every other box's score, which decays can only lower. Only then are the IoU rows of
    the boxes it selected computed, against the working set, and applied one after another in
    order, so that every score is that of selecting one box at a time, to the last bit, and no
    row is computed for a box that is never selected.

    The arrays hold a working set of the boxes in index order (so that ``argmax`` breaks ties by
    index): all of them at first, then, from a round where at most ``_DENSE`` of them can still
    be selected, only those.
    """

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
        self.ids = np.arange(len(scores))  # each working position's box
        self.current, self.labels = scores.copy(), labels
        self.gaussian, self.sigma = method == "gaussian", sigma
        self.iou_threshold, self.score_threshold = iou_threshold, score_threshold
        self.alive = np.ones(len(scores), dtype=bool)
        # Rounds of more than one box need every factor in [0, 1]; otherwise a round selects one.
        self.speculate = _well_formed(self.corners, self.areas, scores)

    def run(self) -> tuple[list[int], list[float]]:
        keep: list[int] = []
        kept_scores: list[float] = []
        while (best := self._best()) is not None:
            selected = self._round(best) if self.speculate else [best]
            current = self.current
            for j, row in zip(selected, self._factors(self._iou(selected)), strict=True):
                kept_scores.append(current.item(j))
                current *= row
            current[selected] = -np.inf
            self.alive[selected] = False
            keep += self.ids[selected].tolist()
        return keep, kept_scores

    def _best(self) -> int | None:
        """The working position of the box to select next, or ``None`` when none is left."""
        current, alive = self.current, self.alive
        if not len(current):
            return None
        best = int(current.argmax())
        if not alive[best]:  # a selected box's -inf times a factor of 0 gave NaN
            current[~alive] = -np.inf
            best = int(current.argmax())
        # Scores only decrease, so once the best is below the threshold all the rest are.
        if not (alive[best] and current[best] >= self.score_threshold):
            return None
        live = self.alive
        if self.score_threshold > 0:  # NaN stays: argmax stops at it
            live = live & ~(current < self.score_threshold)
        # (a threshold of 0 keeps all: a negative score times 0 is -0.0, which it selects)
        if np.count_nonzero(live) <= _DENSE * len(live):
            best = self._shrink(live, best)
        return best

    def _round(self, best: int) -> list[int]:
        """``best`` and the boxes that will be selected right after it, in order."""
        current = self.current
        k = len(current) - _SOFT_CANDIDATES - 1
        limit = np.partition(current, k)[k] if k >= 0 else -np.inf  # the others' best score
        candidates = np.flatnonzero(current > limit)
        j = int(np.searchsorted(candidates, best))
        if j == len(candidates) or candidates[j] != best:  # it ties with the limit
            return [best]
        factors = self._factors(self._iou(candidates, candidates))
        scores = current[candidates]
        # A score above this is above the limit and not below the threshold.
        floor = max(float(limit), np.nextafter(self.score_threshold, -np.inf))
        positions, selected = candidates.tolist(), []
        while True:
            selected.append(positions[j])
            scores *= factors[j]
            scores[j] = -np.inf  # (times a factor of 0 later: NaN, which ends the round)
            j = int(scores.argmax())
            if not scores.item(j) > floor:
                return selected

    def _shrink(self, live: np.ndarray, best: int) -> int:
        """Keep only the ``live`` positions in the working set; returns ``best``'s new one."""
        idx = np.flatnonzero(live)
        self.corners, self.areas = self.corners.take(idx, axis=1), self.areas[idx]
        self.ids, self.current = self.ids[idx], self.current[idx]
        self.alive = np.ones(len(idx), dtype=bool)
        if self.labels is not None:
            self.labels = self.labels[idx]
        return int(np.searchsorted(idx, best))

    def _iou(self, rows: np.ndarray | list[int], cols: np.ndarray | None = None) -> np.ndarray:
        """IoU ``[B, M]`` of the boxes at working positions ``rows`` with those at ``cols`` (all
        by default); 0 between classes. (``take`` is several times as fast as indexing.)"""
        corners, areas, labels = self.corners, self.areas, self.labels
        rows_corners = corners.take(rows, axis=1).T[:, :, None]
        rows_areas = areas.take(rows)
        if cols is not None:
            corners, areas = corners.take(cols, axis=1), areas.take(cols)
        iou, _ = _iou_block(corners, areas, rows_corners, rows_areas)
        if labels is not None:  # other classes are not decayed
            cols_labels = labels if cols is None else labels.take(cols)
            iou[labels.take(rows)[:, None] != cols_labels] = 0
        return iou

    def _factors(self, iou: np.ndarray) -> np.ndarray:
        """The decay factors of an IoU block, computed in its memory."""
        if self.gaussian:
            iou *= iou
            iou /= -self.sigma  # -(iou**2) / sigma
            # NumPy's float32 exp differs from torch's in the last bit for most values; taken
            # in float64 and rounded, it agrees with torch's for about 99 values in 100.
            return np.exp(iou, dtype=np.float64).astype(iou.dtype)
        # 1 - iou where iou > threshold, else 1; np.where would take 3x as long. fmax turns
        # the NaN of a NaN IoU times 0 into 0, as np.where would give 1 for it.
        decay = np.greater(iou, self.iou_threshold).astype(iou.dtype)
        decay *= iou
        np.fmax(decay, np.zeros_like(decay), out=decay)
        return np.subtract(1, decay, out=decay)


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
