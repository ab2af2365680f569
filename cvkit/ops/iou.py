"""IoU, GIoU, DIoU and CIoU of ``xyxy`` boxes: pairwise (every pair) and aligned (row by row).

Boxes are ``Tensor[..., 4]`` as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``.
Degenerate boxes (zero width or height) are valid and never give NaN: a union, enclosing area,
enclosing diagonal or box height below ``eps`` counts as ``eps``, so the IoU of two zero-area
boxes is 0. Results have the promoted floating dtype of the inputs (integer boxes give the
default float dtype); half-precision boxes are computed in float32, since an area overflows
float16 at 65504 (a 256 x 256 box).

References: GIoU, Rezatofighi et al. 2019 (arXiv:1902.09630); DIoU and CIoU, Zheng et al. 2020
(arXiv:1911.08287). The losses built on these (``giou_loss``...) are in
:mod:`cvkit.models.losses.iou_losses`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from cvkit.ops.boxes import check_boxes

# torchvision is imported by the functions that use it: importing it pulls in torch._dynamo
# (about 1.3 s), which commands that only read components (`cvkit config print`, `cvkit
# list`) would otherwise pay for nothing.

_Kind = Literal["iou", "giou", "diou", "ciou"]
EPS = 1e-7  # the smallest divisor: a zero union or enclosing box counts as this

__all__ = [
    "EPS",
    "box_iou",
    "box_iou_aligned",
    "complete_box_iou",
    "complete_box_iou_aligned",
    "distance_box_iou",
    "distance_box_iou_aligned",
    "generalized_box_iou",
    "generalized_box_iou_aligned",
]


def _as_float(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor, torch.dtype]:
    """Both sets in the dtype to compute in, and the dtype to return."""
    out = torch.promote_types(boxes1.dtype, boxes2.dtype)
    if not out.is_floating_point:
        out = torch.get_default_dtype()
    work = torch.float32 if out in (torch.float16, torch.bfloat16) else out
    return boxes1.to(work), boxes2.to(work), out


def _xiou(boxes1: Tensor, boxes2: Tensor, kind: _Kind, eps: float) -> Tensor:
    """IoU-family value of broadcastable ``[..., 4]`` boxes -> ``[...]``; finite if boxes are."""
    x1, y1, x2, y2 = boxes1.unbind(-1)
    u1, v1, u2, v2 = boxes2.unbind(-1)
    w1, h1, w2, h2 = x2 - x1, y2 - y1, u2 - u1, v2 - v1
    inter_w = (torch.minimum(x2, u2) - torch.maximum(x1, u1)).clamp(min=0)
    inter_h = (torch.minimum(y2, v2) - torch.maximum(y1, v1)).clamp(min=0)
    inter = inter_w * inter_h
    union = w1 * h1 + w2 * h2 - inter
    iou = inter / union.clamp(min=eps)
    if kind == "iou":
        return iou
    # The smallest box enclosing both.
    enc_w = torch.maximum(x2, u2) - torch.minimum(x1, u1)
    enc_h = torch.maximum(y2, v2) - torch.minimum(y1, v1)
    if kind == "giou":
        enclosure = enc_w * enc_h
        return iou - (enclosure - union) / enclosure.clamp(min=eps)
    centre_dist2 = ((x1 + x2 - u1 - u2) ** 2 + (y1 + y2 - v1 - v2) ** 2) / 4
    diou = iou - centre_dist2 / (enc_w**2 + enc_h**2).clamp(min=eps)
    if kind == "diou":
        return diou
    # Aspect-ratio term; a zero height counts as eps, so a flat box has angle ~pi/2, not NaN.
    angle1 = torch.atan(w1 / h1.clamp(min=eps))
    angle2 = torch.atan(w2 / h2.clamp(min=eps))
    v = (4 / math.pi**2) * (angle1 - angle2) ** 2
    # alpha is a trade-off weight, not a path for gradients (torchvision holds it constant too).
    with torch.no_grad():
        alpha = v / (1 - iou + v).clamp(min=eps)
    return diou - alpha * v


def _pairwise(boxes1: Tensor, boxes2: Tensor, kind: _Kind, eps: float) -> Tensor:
    check_boxes(boxes1, "boxes1", min_dim=2)
    check_boxes(boxes2, "boxes2", min_dim=2)
    a, b, out = _as_float(boxes1, boxes2)
    return _xiou(a[..., :, None, :], b[..., None, :, :], kind, eps).to(out)


def _aligned(boxes1: Tensor, boxes2: Tensor, kind: _Kind, eps: float) -> Tensor:
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    try:
        torch.broadcast_shapes(boxes1.shape, boxes2.shape)
    except RuntimeError:
        raise ValueError(
            f"boxes1 {list(boxes1.shape)} and boxes2 {list(boxes2.shape)} must have the same "
            "shape (or broadcast) for aligned IoU"
        ) from None
    a, b, out = _as_float(boxes1, boxes2)
    return _xiou(a, b, kind, eps).to(out)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union (torchvision's kernel; two zero-area boxes give 0).

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy (leading batch dimensions ``[..., N, 4]`` also work).
        boxes2: ``Tensor[M, 4]`` xyxy.

    Returns:
        ``Tensor[N, M]``: IoU of every pair, in ``[0, 1]``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
        >>> box_iou(a, b)
        tensor([[0.1429, 1.0000, 0.0000]])
    """
    check_boxes(boxes1, "boxes1", min_dim=2)
    check_boxes(boxes2, "boxes2", min_dim=2)
    a, b, out = _as_float(boxes1, boxes2)
    import torchvision.ops as tvops

    iou = tvops.box_iou(a, b)
    # torchvision divides by the bare union: two zero-area boxes give 0/0; their IoU is 0.
    area_sum = tvops.box_area(a)[..., :, None] + tvops.box_area(b)[..., None, :]
    return iou.masked_fill(area_sum == 0, 0.0).to(out)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Pairwise GIoU: IoU minus the share of the enclosing box that neither box covers.

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy (leading batch dimensions ``[..., N, 4]`` also work).
        boxes2: ``Tensor[M, 4]`` xyxy.
        eps: smallest union and enclosing area used as a divisor.

    Returns:
        ``Tensor[N, M]`` in ``[-1, 1]``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> generalized_box_iou(a, torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]]))
        tensor([[ 1.0000, -0.3333]])
    """
    return _pairwise(boxes1, boxes2, "giou", eps)


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Pairwise DIoU: IoU minus (centre distance / enclosing diagonal) squared.

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy (leading batch dimensions ``[..., N, 4]`` also work).
        boxes2: ``Tensor[M, 4]`` xyxy.
        eps: smallest union and squared enclosing diagonal used as a divisor.

    Returns:
        ``Tensor[N, M]`` in ``[-1, 1]``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> distance_box_iou(a, torch.tensor([[2.0, 0.0, 3.0, 1.0]]))
        tensor([[-0.4000]])
    """
    return _pairwise(boxes1, boxes2, "diou", eps)


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Pairwise CIoU: DIoU minus a weighted aspect-ratio mismatch ``alpha * v``.

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy (leading batch dimensions ``[..., N, 4]`` also work).
        boxes2: ``Tensor[M, 4]`` xyxy.
        eps: smallest union, squared diagonal and box height used as a divisor.

    Returns:
        ``Tensor[N, M]`` in ``[-1.5, 1]``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> complete_box_iou(a, torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 1.0]]))
        tensor([[1.0000, 0.4655]])
    """
    return _pairwise(boxes1, boxes2, "ciou", eps)


def box_iou_aligned(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Element-wise IoU of ``boxes1[i]`` and ``boxes2[i]``.

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy (any ``[..., 4]`` that broadcasts with ``boxes2``).
        boxes2: ``Tensor[N, 4]`` xyxy.
        eps: smallest union used as a divisor.

    Returns:
        ``Tensor[N]`` in ``[0, 1]``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
        >>> b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]])
        >>> box_iou_aligned(a, b)
        tensor([0.1429, 1.0000])
    """
    return _aligned(boxes1, boxes2, "iou", eps)


def generalized_box_iou_aligned(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Element-wise GIoU; shapes as :func:`box_iou_aligned`, values in ``[-1, 1]``."""
    return _aligned(boxes1, boxes2, "giou", eps)


def distance_box_iou_aligned(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Element-wise DIoU; shapes as :func:`box_iou_aligned`, values in ``[-1, 1]``."""
    return _aligned(boxes1, boxes2, "diou", eps)


def complete_box_iou_aligned(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Element-wise CIoU; shapes as :func:`box_iou_aligned`, values in ``[-1.5, 1]``."""
    return _aligned(boxes1, boxes2, "ciou", eps)
