"""Pure tensor operations on boxes: formats, IoU family, losses, NMS. Knows nothing of models.

Every public name lives in :mod:`cvkit.ops.boxes` and here. ``cvkit.ops.box_iou`` and
``cvkit.ops.nms`` are the functions; their modules are ``sys.modules["cvkit.ops.box_iou"]``.
"""

from cvkit.ops.boxes import (
    EPS,
    FORMATS,
    BoxFormat,
    Reduction,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    box_iou_aligned,
    ciou_loss,
    clip_boxes,
    complete_box_iou,
    complete_box_iou_aligned,
    diou_loss,
    diou_nms,
    distance_box_iou,
    distance_box_iou_aligned,
    generalized_box_iou,
    generalized_box_iou_aligned,
    giou_loss,
    nms,
    remove_small_boxes,
    soft_nms,
    valid_boxes_mask,
)

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
