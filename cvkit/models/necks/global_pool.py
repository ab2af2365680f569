"""Global pooling neck: the last feature map -> one vector per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from cvkit.registry import NECKS
from cvkit.structures import FeatureSpec


@NECKS.register()
class GlobalPool(nn.Module):
    """Pool the last of the backbone's maps over space.

    Args:
        in_channels: channels of each backbone map (wired from the backbone by the builder).
        pool: ``"avg"``, ``"max"``, or ``"avgmax"`` (their mean, as in timm).

    Shapes: ``list[Tensor[B, C_i, H_i, W_i]]`` -> ``Tensor[B, C_last]``.
    """

    def __init__(
        self, in_channels: Sequence[int], pool: Literal["avg", "max", "avgmax"] = "avg"
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("GlobalPool: in_channels is empty; the backbone returns no maps")
        self.pool = pool
        self.feature_info = [FeatureSpec(int(in_channels[-1]), 0)]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        if self.pool == "avg":
            return x.mean(dim=(2, 3))
        if self.pool == "max":
            return x.amax(dim=(2, 3))
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))
