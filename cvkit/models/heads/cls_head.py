"""Classification head: dropout then a linear layer."""

from __future__ import annotations

import torch
from torch import nn

from cvkit.models.pretrained import LoadReport, load_head_tensors
from cvkit.registry import HEADS


@HEADS.register()
class ClsHead(nn.Module):
    """Logits from a pooled feature vector.

    Args:
        in_channels: length ``C`` of the pooled vector (wired from the neck by the builder).
        num_classes: number of classes ``K``.
        dropout: dropout probability before the linear layer.

    Shapes: ``Tensor[B, C]`` -> ``Tensor[B, K]``.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ClsHead: num_classes must be at least 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ClsHead: dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        self.reset_head(num_classes)

    def reset_head(self, num_classes: int) -> None:
        """Replace the linear layer with a fresh one for ``num_classes`` (Xavier-initialised)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.in_channels, num_classes).to(self.fc.weight.device)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def load_pretrained_head(self, weights: dict[str, torch.Tensor]) -> LoadReport:
        """Copy a pretrained classifier into ``fc`` where the shapes match.

        Args:
            weights: ``{"weight": Tensor[K', C'], "bias": Tensor[K']}``, e.g. a backbone's
                ``pretrained_head``.

        Returns:
            What was loaded; a tensor whose shape differs (another number of classes) is
            dropped and logged on ``cvkit.pretrained`` with both shapes, and ``fc`` keeps its
            fresh initialisation for it.
        """
        return load_head_tensors(
            self.fc, weights, "head.fc", "the backbone's pretrained classifier"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))
