"""Cross-entropy with label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.normalizer import loss_normalizer
from cvkit.registry import LOSSES


@LOSSES.register()
class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy of logits against integer labels.

    Args:
        label_smoothing: mass spread uniformly over all classes, in ``[0, 1)``.
        weight: loss weight of this term in the task's total.

    Shapes: logits ``Tensor[B, K]``, labels ``Tensor[B]`` (int64) -> scalar.
    """

    def __init__(self, label_smoothing: float = 0.0, weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.weight = weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = F.cross_entropy(
            logits, labels, label_smoothing=self.label_smoothing, reduction="sum"
        )
        # the mean over the batch; under DDP over every process's batch (losses.normalizer)
        return self.weight * total / loss_normalizer(labels.numel(), like=total)
