"""Box formats, areas, clipping and size filters, and the one check of a box tensor's shape.

Boxes are ``Tensor[..., 4]``; cvkit's own format is ``xyxy`` in absolute pixels. IoU lives in
:mod:`cvkit.ops.iou` and NMS in :mod:`cvkit.ops.non_max_suppression`; import every box op from
:mod:`cvkit.ops`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

# torchvision is imported by the functions that use it: importing it pulls in torch._dynamo
# (about 1.3 s), which commands that only read components (`cvkit config print`, `cvkit
# list`) would otherwise pay for nothing.

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")

__all__ = [
    "FORMATS",
    "BoxFormat",
    "box_area",
    "box_convert",
    "check_boxes",
    "clip_boxes",
    "remove_small_boxes",
    "valid_boxes_mask",
]


def check_boxes(boxes: Tensor, name: str, min_dim: int = 1) -> None:
    """Raise unless ``boxes`` is a tensor of shape ``[..., 4]`` with at least ``min_dim`` dims.

    Every box op calls this first, so a wrong input fails with its argument's name and shape
    rather than inside a torchvision kernel.

    Args:
        boxes: the value to check.
        name: the argument's name, for the message.
        min_dim: 1 for ``[..., 4]`` (one box is enough), 2 for ``[N, 4]`` and batches of it.

    Raises:
        TypeError: ``boxes`` is not a ``torch.Tensor``.
        ValueError: its last dimension is not 4, or it has fewer than ``min_dim`` dimensions.

    Example:
        >>> check_boxes(torch.zeros(3, 4), "boxes", min_dim=2)
        >>> check_boxes(torch.zeros(4), "boxes", min_dim=2)
        Traceback (most recent call last):
        ...
        ValueError: boxes must have shape [N, 4], got [4]
    """
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.ndim < min_dim or boxes.shape[-1] != 4:
        shape = "[N, 4]" if min_dim == 2 else "[..., 4]"
        raise ValueError(f"{name} must have shape {shape}, got {list(boxes.shape)}")


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
    check_boxes(boxes, "boxes")
    import torchvision.ops as tvops

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
    check_boxes(boxes, "boxes")
    if len(size) != 2 or any(not isinstance(s, int) or s < 0 for s in size):
        raise ValueError(f"size must be (h, w), two non-negative ints; got {size!r}")
    import torchvision.ops as tvops

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
    check_boxes(boxes, "boxes")
    import torchvision.ops as tvops

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
    check_boxes(boxes, "boxes")
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
    check_boxes(boxes, "boxes", min_dim=2)
    if boxes.ndim != 2:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    return torch.where(valid_boxes_mask(boxes, min_size))[0]
