"""Box formats, areas, clipping and size filters; the home of every box op's public name.

Boxes are ``Tensor[..., 4]``; cvkit's own format is ``xyxy`` in absolute pixels. The IoU family
lives in :mod:`cvkit.ops.box_iou` and NMS in :mod:`cvkit.ops.nms`; both are re-exported here, so
``from cvkit.ops.boxes import box_iou, batched_nms`` works.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision.ops as tvops
from torch import Tensor

from cvkit.ops.box_iou import (
    EPS,
    Reduction,
    _check_boxes,
    box_iou,
    box_iou_aligned,
    ciou_loss,
    complete_box_iou,
    complete_box_iou_aligned,
    diou_loss,
    distance_box_iou,
    distance_box_iou_aligned,
    generalized_box_iou,
    generalized_box_iou_aligned,
    giou_loss,
)
from cvkit.ops.nms import batched_nms, diou_nms, nms, soft_nms

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")

__all__ = [
    "EPS",
    "FORMATS",
    "BoxFormat",
    "Reduction",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "box_iou_aligned",
    "ciou_loss",
    "clip_boxes",
    "complete_box_iou",
    "complete_box_iou_aligned",
    "diou_loss",
    "diou_nms",
    "distance_box_iou",
    "distance_box_iou_aligned",
    "generalized_box_iou",
    "generalized_box_iou_aligned",
    "giou_loss",
    "nms",
    "remove_small_boxes",
    "soft_nms",
    "valid_boxes_mask",
]


def box_convert(boxes: Tensor, in_fmt: BoxFormat, out_fmt: BoxFormat) -> Tensor:
    """Convert boxes between ``"xyxy"``, ``"xywh"`` (corner, size) and ``"cxcywh"`` (centre, size).

    Args:
        boxes: ``Tensor[..., 4]`` in ``in_fmt``.
        in_fmt: format of ``boxes``.
        out_fmt: format to return.

    Returns:
        ``Tensor[..., 4]`` in ``out_fmt``, a new tensor. The dtype is kept, except that integer
        boxes become floating point when a centre is involved.

    Example:
        >>> box_convert(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "xyxy", "cxcywh")
        tensor([[20., 40., 20., 40.]])
    """
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in FORMATS:
            raise ValueError(f"{name} must be one of {', '.join(FORMATS)}; got {fmt!r}")
    _check_boxes(boxes, "boxes")
    return tvops.box_convert(boxes, in_fmt, out_fmt)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp xyxy boxes into an image: x into ``[0, w]``, y into ``[0, h]``.

    A box wholly outside the image becomes a zero-width or zero-height box on the border; drop
    those with :func:`valid_boxes_mask` or :func:`remove_small_boxes`.

    Args:
        boxes: ``Tensor[..., 4]`` xyxy.
        size: ``(h, w)`` of the image.

    Returns:
        ``Tensor[..., 4]``, a new tensor of the same dtype.

    Example:
        >>> clip_boxes(torch.tensor([[-5.0, 10.0, 50.0, 120.0]]), (100, 40))
        tensor([[  0.,  10.,  40., 100.]])
    """
    _check_boxes(boxes, "boxes")
    if len(size) != 2 or any(not isinstance(s, int) or s < 0 for s in size):
        raise ValueError(f"size must be (h, w), two non-negative ints; got {size!r}")
    return tvops.clip_boxes_to_image(boxes, (size[0], size[1]))


def box_area(boxes: Tensor) -> Tensor:
    """Area ``(x2 - x1) * (y2 - y1)`` of xyxy boxes.

    Args:
        boxes: ``Tensor[..., 4]`` xyxy.

    Returns:
        ``Tensor[...]``. Integer boxes keep their integer dtype; float16 and bfloat16 boxes give
        float32, since an area overflows float16 at 65504.

    Example:
        >>> box_area(torch.tensor([[0.0, 0.0, 4.0, 2.5], [1.0, 1.0, 1.0, 3.0]]))
        tensor([10.,  0.])
    """
    _check_boxes(boxes, "boxes")
    return tvops.box_area(boxes)


def valid_boxes_mask(boxes: Tensor, min_size: float = 0.0) -> Tensor:
    """Which boxes have width and height both ``>= min_size``.

    With the default ``min_size=0`` this rejects inverted boxes (``x2 < x1``) and NaN boxes but
    keeps zero-width ones; pass a small positive ``min_size`` to drop those too.

    Args:
        boxes: ``Tensor[..., 4]`` xyxy.
        min_size: smallest side length kept.

    Returns:
        ``Tensor[...]`` bool.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 0.0, 4.0], [3.0, 0.0, 1.0, 4.0]])
        >>> valid_boxes_mask(boxes)
        tensor([ True,  True, False])
        >>> valid_boxes_mask(boxes, min_size=1.0)
        tensor([ True, False, False])
    """
    _check_boxes(boxes, "boxes")
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return (width >= min_size) & (height >= min_size)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both ``>= min_size`` (as torchvision).

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        min_size: smallest side length kept.

    Returns:
        ``Tensor[K]`` int64 indices, ascending.

    Example:
        >>> remove_small_boxes(torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 0.5, 4.0]]), 1.0)
        tensor([0])
    """
    _check_boxes(boxes, "boxes", min_dim=2)
    if boxes.ndim != 2:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    return torch.where(valid_boxes_mask(boxes, min_size))[0]
