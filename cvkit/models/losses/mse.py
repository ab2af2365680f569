"""Mean squared error against one-hot targets (for comparison with cross-entropy)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.registry import LOSSES


@LOSSES.register()
class OneHotMSELoss(nn.Module):
    """``mean((softmax(logits) - one_hot(labels))**2)``, or on the raw logits.

    Args:
        on_probs: compare softmax probabilities (True) or the logits themselves (False).
        weight: loss weight of this term in the task's total.

    Shapes: logits ``Tensor[B, K]``, labels ``Tensor[B]`` (int64) -> scalar.
    """

    def __init__(self, on_probs: bool = True, weight: float = 1.0) -> None:
        super().__init__()
        self.on_probs, self.weight = on_probs, weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores = logits.softmax(dim=1) if self.on_probs else logits
        target = F.one_hot(labels, logits.shape[1]).to(scores.dtype)
        return self.weight * F.mse_loss(scores, target)
