"""Data contracts shared across cvkit.

Detection and segmentation contracts join this file as those tasks land; every box in cvkit is
``xyxy`` in absolute pixels and label 0 is the first foreground class (``num_classes`` never
counts a background).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureSpec:
    """One feature map a backbone or neck returns.

    Attributes:
        channels: number of channels ``C`` of the map ``Tensor[B, C, H/stride, W/stride]``.
        stride: how many input pixels one cell of the map spans.
    """

    channels: int
    stride: int


@dataclass
class ClsBatch:
    """A batch for classification.

    Attributes:
        images: ``Tensor[B, 3, H, W]`` uint8 RGB.
        labels: ``Tensor[B]`` int64 class indices, or ``None`` when predicting.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> ClsBatch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return ClsBatch(self.images.to(device, non_blocking=True), labels)

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class ClsPrediction:
    """One image's classification.

    Attributes:
        probs: ``Tensor[K]`` class probabilities.
        label: the most probable class index.
        score: its probability.
    """

    probs: torch.Tensor
    label: int
    score: float
