"""What every detector shares: matching a target's boxes, the box-loss dispatch, and putting
predictions back into the pixels of the original image."""

from __future__ import annotations

import torch
from torch import nn

from cvkit.models.task_utils.matcher import BACKGROUND
from cvkit.ops.boxes import box_iou
from cvkit.structures import DetPrediction, DetTarget


def match_target(matcher, target: DetTarget, boxes: torch.Tensor) -> torch.Tensor:
    """Each of ``boxes`` (anchors or proposals, ``Tensor[A, 4]``) -> the index of its matched
    gt in ``target``, ``-1`` background or ``-2`` ignore: ``Tensor[A]`` int64."""
    if target.boxes.numel() == 0:
        return torch.full((boxes.shape[0],), BACKGROUND, dtype=torch.int64, device=boxes.device)
    return matcher(box_iou(target.boxes, boxes), target.iscrowd)


def box_regression_loss(
    box_loss: nn.Module, box_coder, deltas: torch.Tensor, gt: torch.Tensor, refs: torch.Tensor
) -> torch.Tensor:
    """``box_loss`` on deltas vs encoded gts, or, for losses with ``uses_boxes`` (the IoU
    family), on decoded boxes vs gts. ``deltas``, ``gt``, ``refs``: ``Tensor[P, 4]``, row ``i``
    of each belonging together (``refs`` are the anchors or proposals)."""
    if getattr(box_loss, "uses_boxes", False):
        return box_loss(box_coder.decode(deltas, refs), gt)
    return box_loss(deltas, box_coder.encode(gt, refs))


def to_original(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    size: tuple[int, int],
    target: DetTarget | None,
) -> DetPrediction:
    """Boxes in the batch's pixels (an image of ``size`` ``(h, w)``) -> the image file's pixels.

    Without a target (nothing says the original size) the boxes stay as they are.
    """
    image_id, scale = -1, (1.0, 1.0)
    if target is not None:
        image_id = target.image_id
        scale = (target.orig_size[0] / size[0], target.orig_size[1] / size[1])
    factor = boxes.new_tensor([scale[1], scale[0], scale[1], scale[0]])
    return DetPrediction(boxes * factor, scores, labels, image_id)
