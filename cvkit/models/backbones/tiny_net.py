"""TinyNet: a small plain conv net, for tests, smoke runs and tiny images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec


def _conv_norm_relu(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    # group norm: up to 8 groups that divide the channels
    layer = nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(math.gcd(cout, 8), cout)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        layer,
        nn.ReLU(inplace=True),
    )


@BACKBONES.register()
class TinyNet(StagedBackbone):
    """Four stages of two 3x3 conv-norm-ReLU layers; each stage halves the resolution.

    Args:
        width: channels of the first stage; stage ``i`` has ``width * 2**i``.
        out_indices: which stages to return (0..3, negative from the end).
        in_chans: input channels.
        norm: ``batch`` norm, or ``group`` norm (up to 8 groups), which does not depend on
            how the batch is split (tiny batches, several processes without sync BN).

    Shapes: ``Tensor[B, in_chans, H, W]`` -> ``[Tensor[B, width * 2**i, H / 2**(i+1), ...]]``.
    """

    def __init__(
        self,
        width: int = 32,
        out_indices: Sequence[int] = (-1,),
        in_chans: int = 3,
        norm: Literal["batch", "group"] = "batch",
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"TinyNet: width must be positive, got {width}")
        chans = [width * 2**i for i in range(4)]
        cins = [in_chans, *chans[:-1]]
        self.stages = nn.ModuleList(
            nn.Sequential(_conv_norm_relu(cin, c, 2, norm), _conv_norm_relu(c, c, 1, norm))
            for cin, c in zip(cins, chans)
        )
        self.set_outputs([FeatureSpec(c, 2 ** (i + 1)) for i, c in enumerate(chans)], out_indices)
