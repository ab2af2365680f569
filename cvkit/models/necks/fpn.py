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
    more maps follow, each at half the resolution of the one before:

    - ``extra_type="conv"``: stride-2 3x3 convs (RetinaNet's P6, P7). The first takes the last
      backbone map (``extra_from="input"``, the RetinaNet paper) or the last P
      (``"output"``); each later one applies ReLU first.
    - ``extra_type="maxpool"``: stride-2 subsampling of the last P, no parameters (Faster
      R-CNN's P6, used by the RPN only).

    Args:
        in_channels: channels of each backbone map (wired from ``feature_info``).
        in_strides: stride of each backbone map (wired from ``feature_info``).
        out_channels: channels of every pyramid level.
        extra_levels: coarser levels added after the last backbone level.
        extra_type: how extra levels are made: ``"conv"`` or ``"maxpool"``.
        extra_from: what the first extra conv level is computed from; ``None`` means
            ``"input"`` for convs. Max-pooled levels always come from the last P.

    Shapes: ``[Tensor[B, C_i, H/s_i, W/s_i]]`` -> ``[Tensor[B, out, H/s, W/s]]`` for the
    input strides then ``2 * s_last``, ``4 * s_last``...
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int] | None = None,
        out_channels: int = 256,
        extra_levels: int = 2,
        extra_type: Literal["conv", "maxpool"] = "conv",
        extra_from: Literal["input", "output"] | None = None,
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
        if extra_type == "maxpool" and extra_from == "input":
            raise ValueError(
                "FPN: extra_type='maxpool' subsamples the last pyramid level, so extra_from "
                "must be 'output' or left out"
            )
        self.extra_type = extra_type
        self.extra_from = extra_from or ("input" if extra_type == "conv" else "output")
        self.num_extra = extra_levels
        first_in = in_channels[-1] if self.extra_from == "input" else out_channels
        self.extra = nn.ModuleList(
            nn.Conv2d(first_in if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
            for i in range(extra_levels if extra_type == "conv" else 0)
        )
        all_strides = strides + [strides[-1] * 2 ** (i + 1) for i in range(extra_levels)]
        self.feature_info = [FeatureSpec(out_channels, s) for s in all_strides]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)  # the FPN paper's init
                if m.bias is not None:
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
        if self.extra_type == "maxpool":
            for _ in range(self.num_extra):
                # kernel 1, stride 2: torchvision's and Detectron2's LastLevelMaxPool
                outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
            return outs
        x = feats[-1] if self.extra_from == "input" else outs[-1]
        for i, conv in enumerate(self.extra):
            x = conv(x if i == 0 else F.relu(x))
            outs.append(x)
        return outs
