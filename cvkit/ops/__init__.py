"""Pure tensor operations on boxes: formats, IoU family, NMS. Knows nothing of models.

Import every box op from here (``from cvkit.ops import box_iou, batched_nms``). The modules
are named after what they hold, never after one of their functions, so ``cvkit.ops.iou`` is
always a module and ``cvkit.ops.box_iou`` always the function:

- :mod:`cvkit.ops.boxes`: formats (``box_convert``), areas, clipping, size filters, and
  ``check_boxes``, the shape check every op shares;
- :mod:`cvkit.ops.iou`: IoU, GIoU, DIoU, CIoU, pairwise and aligned;
- :mod:`cvkit.ops.non_max_suppression`: greedy, batched, soft and DIoU NMS.

The IoU losses (``giou_loss``, ``diou_loss``, ``ciou_loss``) are training objectives, so they
live with the other losses in :mod:`cvkit.models.losses.iou_losses`.
"""

from cvkit.ops.boxes import (
    FORMATS,
    BoxFormat,
    box_area,
    box_convert,
    check_boxes,
    clip_boxes,
    remove_small_boxes,
    valid_boxes_mask,
)
from cvkit.ops.iou import (
    EPS,
    box_iou,
    box_iou_aligned,
    complete_box_iou,
    complete_box_iou_aligned,
    distance_box_iou,
    distance_box_iou_aligned,
    generalized_box_iou,
    generalized_box_iou_aligned,
)
from cvkit.ops.non_max_suppression import batched_nms, diou_nms, nms, soft_nms

__all__ = [
    "EPS",
    "FORMATS",
    "BoxFormat",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "box_iou_aligned",
    "check_boxes",
    "clip_boxes",
    "complete_box_iou",
    "complete_box_iou_aligned",
    "diou_nms",
    "distance_box_iou",
    "distance_box_iou_aligned",
    "generalized_box_iou",
    "generalized_box_iou_aligned",
    "nms",
    "remove_small_boxes",
    "soft_nms",
    "valid_boxes_mask",
]
