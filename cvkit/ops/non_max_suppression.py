"""Non-maximum suppression: greedy (torchvision's kernel), soft (Bodla et al. 2017) and DIoU.

Every function takes ``xyxy`` boxes ``Tensor[N, 4]`` and scores ``Tensor[N]``, and returns
int64 indices into them on their device, in the order the boxes were selected: by score,
descending, ties by index, ascending. ``labels`` (``Tensor[N]`` of integers), where given, keep
suppression within a class. Nothing here is differentiable.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision.ops as tvops
from torch import Tensor

from cvkit.ops.boxes import check_boxes
from cvkit.ops.iou import box_iou_aligned, distance_box_iou_aligned

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
    work, current = boxes.detach().to(dtype), scores.detach().to(dtype)
    alive = torch.ones_like(current, dtype=torch.bool)
    keep: list[int] = []
    kept_scores: list[float] = []
    # One step per kept box: select the best, decay every score by its IoU with it.
    for _ in range(len(work)):
        top_score, top = current.masked_fill(~alive, -torch.inf).max(0)
        best_score, best = top_score.item(), int(top)
        # Scores only decrease, so once the best is below the threshold all the rest are too.
        if not best_score >= score_threshold:
            break
        keep.append(best)
        kept_scores.append(best_score)
        alive[best] = False
        iou = box_iou_aligned(work[best], work)  # [N]: the best box against every box
        if labels is not None:
            iou = iou.masked_fill(labels != labels[best], 0.0)  # other classes: no decay
        if method == "linear":
            current = current * torch.where(iou > iou_threshold, 1 - iou, 1.0)
        else:
            current = current * torch.exp(-(iou**2) / sigma)
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
    work = boxes.detach().to(_work_dtype(boxes, scores))
    remaining = scores.detach().argsort(descending=True, stable=True)
    keep: list[int] = []
    # One step per kept box: it drops, in one vectorised test, every box left below it.
    while remaining.numel() > 0:
        best, rest = int(remaining[0]), remaining[1:]
        keep.append(best)
        # index_select: plain indexing of an [N, 4] tensor is many times slower on CPU.
        suppress = distance_box_iou_aligned(work[best], work.index_select(0, rest)) > iou_threshold
        if labels is not None:
            suppress &= labels.index_select(0, rest) == labels[best]
        remaining = rest[~suppress]
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)
