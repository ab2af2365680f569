"""Detection losses: sigmoid focal loss, smooth-L1 on box deltas, IoU-family box losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from cvkit.registry import LOSSES


@LOSSES.register()
class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017), summed.

    Wraps ``torchvision.ops.sigmoid_focal_loss``; the caller normalises (by positives).

    Args:
        alpha: weight of the positive class.
        gamma: focusing exponent.
        weight: loss weight of this term.

    Shapes: logits ``Tensor[N, K]``, targets ``Tensor[N, K]`` in {0, 1} -> scalar.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.weight = alpha, gamma, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, reduction="sum")
        return self.weight * loss


@LOSSES.register()
class SmoothL1Loss(nn.Module):
    """Smooth-L1 between predicted and target box deltas, summed; ``beta=0`` is plain L1.

    Shapes: ``Tensor[N, 4]`` and ``Tensor[N, 4]`` -> scalar.
    """

    uses_boxes = False  # works on encoded deltas

    def __init__(self, beta: float = 0.0, weight: float = 1.0) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be >= 0, got {beta}")
        self.beta, self.weight = beta, weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.beta == 0:
            return self.weight * F.l1_loss(pred, target, reduction="sum")
        return self.weight * F.smooth_l1_loss(pred, target, beta=self.beta, reduction="sum")


@LOSSES.register()
class IoULoss(nn.Module):
    """``1 - xIoU`` between decoded predicted boxes and ground-truth boxes, summed.

    Args:
        kind: ``"giou"`` (Rezatofighi et al. 2019), ``"diou"`` or ``"ciou"`` (Zheng et al.
            2020).
        weight: loss weight of this term.

    Shapes: boxes ``Tensor[N, 4]`` xyxy and ``Tensor[N, 4]`` -> scalar.
    """

    uses_boxes = True  # works on decoded boxes

    def __init__(self, kind: Literal["giou", "diou", "ciou"] = "giou", weight: float = 1.0) -> None:
        super().__init__()
        self.kind, self.weight = kind, weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from cvkit.ops import boxes as B

        fn = {"giou": B.giou_loss, "diou": B.diou_loss, "ciou": B.ciou_loss}[self.kind]
        return self.weight * fn(pred, target, reduction="sum")
