"""IoU-family box losses: ``1 - GIoU``, ``1 - DIoU`` and ``1 - CIoU`` of aligned ``xyxy`` boxes.

The overlap measures themselves are pure box ops (:mod:`cvkit.ops.iou`); these functions only
turn them into training objectives with a reduction. ``IoULoss`` (in
:mod:`cvkit.models.losses.detection`) wraps them as a registered loss.

References: GIoU, Rezatofighi et al. 2019 (arXiv:1902.09630); DIoU and CIoU, Zheng et al. 2020
(arXiv:1911.08287).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor

from cvkit.ops import (
    EPS,
    complete_box_iou_aligned,
    distance_box_iou_aligned,
    generalized_box_iou_aligned,
)

Reduction = Literal["none", "mean", "sum"]

__all__ = ["Reduction", "ciou_loss", "diou_loss", "giou_loss"]


def _loss(
    aligned_iou: Callable[[Tensor, Tensor, float], Tensor],
    pred: Tensor,
    target: Tensor,
    reduction: Reduction,
    eps: float,
) -> Tensor:
    """``1 - aligned_iou(pred, target)``, reduced; ``[N]`` for ``"none"``, else a scalar."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    loss = 1 - aligned_iou(pred, target, eps)
    if reduction == "none":
        return loss
    # The mean of no boxes is 0 (not NaN), still attached to the graph.
    if reduction == "mean" and loss.numel() > 0:
        return loss.mean()
    return loss.sum()


def giou_loss(
    pred: Tensor, target: Tensor, reduction: Reduction = "none", eps: float = EPS
) -> Tensor:
    """``1 - GIoU`` of aligned boxes (Rezatofighi et al. 2019).

    Args:
        pred: ``Tensor[N, 4]`` xyxy predicted boxes.
        target: ``Tensor[N, 4]`` xyxy target boxes.
        reduction: ``"none"`` (``Tensor[N]``), ``"mean"`` or ``"sum"`` (scalar; the mean of
            zero boxes is 0).
        eps: smallest union and enclosing area used as a divisor.

    Returns:
        The loss, in ``[0, 2]`` per box.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
        >>> target = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
        >>> giou_loss(pred, target)
        tensor([0.0000, 1.3333])
        >>> giou_loss(pred, target, reduction="mean")
        tensor(0.6667)
    """
    return _loss(generalized_box_iou_aligned, pred, target, reduction, eps)


def diou_loss(
    pred: Tensor, target: Tensor, reduction: Reduction = "none", eps: float = EPS
) -> Tensor:
    """``1 - DIoU`` of aligned boxes (Zheng et al. 2020); arguments as :func:`giou_loss`.

    Example:
        >>> import torch
        >>> diou_loss(torch.tensor([[2.0, 0.0, 3.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
        tensor([1.4000])
    """
    return _loss(distance_box_iou_aligned, pred, target, reduction, eps)


def ciou_loss(
    pred: Tensor, target: Tensor, reduction: Reduction = "none", eps: float = EPS
) -> Tensor:
    """``1 - CIoU`` of aligned boxes (Zheng et al. 2020); arguments as :func:`giou_loss`.

    The trade-off weight ``alpha`` is held constant in the backward pass. The aspect term's
    gradient grows as ``1 / eps`` for a box with zero width and height.

    Example:
        >>> import torch
        >>> ciou_loss(torch.tensor([[0.0, 0.0, 2.0, 1.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
        tensor([0.5345])
    """
    return _loss(complete_box_iou_aligned, pred, target, reduction, eps)
