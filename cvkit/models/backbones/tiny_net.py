"""TinyNet: a small plain conv net, for tests, smoke runs and tiny images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register()
class TinyNet(StagedBackbone):
    """Four stages of two 3x3 conv-BN-ReLU layers; each stage halves the resolution.

    Args:
        width: channels of the first stage; stage ``i`` has ``width * 2**i``.
        out_indices: which stages to return (0..3, negative from the end).
        in_chans: input channels.

    Shapes: ``Tensor[B, in_chans, H, W]`` -> ``[Tensor[B, width * 2**i, H / 2**(i+1), ...]]``.
    """

    def __init__(
        self, width: int = 32, out_indices: Sequence[int] = (-1,), in_chans: int = 3
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"TinyNet: width must be positive, got {width}")
        chans = [width * 2**i for i in range(4)]
        cins = [in_chans, *chans[:-1]]
        self.stages = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(cin, c, 2), _conv_bn_relu(c, c, 1))
            for cin, c in zip(cins, chans)
        )
        self.set_outputs([FeatureSpec(c, 2 ** (i + 1)) for i, c in enumerate(chans)], out_indices)
