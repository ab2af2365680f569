"""Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object Detection", 2017)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.registry import NECKS
from cvkit.structures import FeatureSpec


@NECKS.register()
class FPN(nn.Module):
    """Top-down pyramid with lateral connections, plus extra coarser levels.

    From backbone maps C_i (strides s_i) it makes P_i with ``out_channels`` each: a 1x1
    lateral conv, plus the coarser P upsampled (nearest), then a 3x3 conv. ``extra_levels``
    more maps come from stride-2 3x3 convs (RetinaNet's P6, P7); the first takes the last
    backbone map (``extra_from="input"``, the RetinaNet paper) or the last P
    (``"output"``), and each later one applies ReLU first.

    Args:
        in_channels: channels of each backbone map (wired from ``feature_info``).
        in_strides: stride of each backbone map (wired from ``feature_info``).
        out_channels: channels of every pyramid level.
        extra_levels: coarser levels added after the last backbone level.
        extra_from: what the first extra level is computed from.

    Shapes: ``[Tensor[B, C_i, H/s_i, W/s_i]]`` -> ``[Tensor[B, out, H/s, W/s]]`` for the
    input strides then ``2 * s_last``, ``4 * s_last``...
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int] | None = None,
        out_channels: int = 256,
        extra_levels: int = 2,
        extra_from: Literal["input", "output"] = "input",
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("FPN: in_channels is empty; the backbone returns no maps")
        strides = (
            list(in_strides) if in_strides else [2 ** (i + 3) for i in range(len(in_channels))]
        )
        if len(strides) != len(in_channels):
            raise ValueError(f"FPN: {len(in_channels)} in_channels but {len(strides)} in_strides")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        self.extra_from = extra_from
        first_in = in_channels[-1] if extra_from == "input" else out_channels
        self.extra = nn.ModuleList(
            nn.Conv2d(first_in if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
            for i in range(extra_levels)
        )
        all_strides = strides + [strides[-1] * 2 ** (i + 1) for i in range(extra_levels)]
        self.feature_info = [FeatureSpec(out_channels, s) for s in all_strides]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)  # the FPN paper's init
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.lateral):
            raise ValueError(f"FPN expects {len(self.lateral)} maps, got {len(feats)}")
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse to fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        outs = [conv(x) for conv, x in zip(self.output, laterals)]
        x = feats[-1] if self.extra_from == "input" else outs[-1]
        for i, conv in enumerate(self.extra):
            x = conv(x if i == 0 else F.relu(x))
            outs.append(x)
        return outs
