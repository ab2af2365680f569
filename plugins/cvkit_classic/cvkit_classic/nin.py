"""Network in Network: Lin, Chen & Yan, "Network In Network", ICLR 2014.

The paper replaces each conv layer by an "mlpconv" block: a conv followed by two 1x1 convs (a
small MLP slid over the image), all with ReLU, and replaces the fully-connected classifier by
a last block with one map per class, averaged over space. The paper details only its
CIFAR-10/SVHN/MNIST nets (32x32 inputs); this is the ImageNet version for 224x224 inputs that
the authors released with it (the one reproduced in "Dive into Deep Learning"): mlpconv blocks
of 96 (11x11/4), 256 (5x5) and 384 (3x3) channels, each followed by 3x3/2 max pooling, then
dropout and a 1024-channel 3x3 block.
"""

from __future__ import annotations

from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec
from cvkit_classic.weight_init import he_init


def mlpconv(
    in_channels: int,
    channels: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    out_channels: int | None = None,
) -> nn.Sequential:
    """One mlpconv block: ``kernel``x``kernel`` conv, then two 1x1 convs, each with ReLU.

    Shapes: ``Tensor[B, in_channels, H, W]`` -> ``Tensor[B, out_channels or channels, H', W']``
    with ``H' = (H + 2 padding - kernel) // stride + 1``.
    """
    out_channels = out_channels or channels
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel, stride, padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, out_channels, 1),
        nn.ReLU(inplace=True),
    )


def _pool() -> nn.MaxPool2d:
    # 3x3/2 max pooling padded by 1, so the map is ceil(H/2): unpadded (as in the release),
    # a 32x32 input would shrink to 0x0 before the third block.
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


@BACKBONES.register()
class NiN(StagedBackbone):
    """The ImageNet NiN's four mlpconv blocks, one stage each.

    ===== ===================================== ============ ======
    stage layers                                channels     stride
    ===== ===================================== ============ ======
    0     mlpconv 11x11/4 (96, 96, 96), pool    96           8
    1     mlpconv 5x5 (256, 256, 256), pool     256          16
    2     mlpconv 3x3 (384, 384, 384), pool     384          32
    3     dropout, mlpconv 3x3 (1024, 1024, C)  out_channels 32
    ===== ===================================== ============ ======

    Shapes: ``Tensor[B, in_chans, H, W]`` -> stage ``i``: ``Tensor[B, C_i, ceil(H/s_i),
    ceil(W/s_i)]``; 224x224 gives ``out_channels`` x 7 x 7 at the end.

    Deviations from the released net: conv1 is padded by 5 and the pools by 1, so every map
    is ``ceil(H/stride)`` and 32x32 inputs work (the weights are the same). Its last 1x1 conv
    has one channel per class (1000) for the global average pool to read as logits; as a
    backbone it has ``out_channels`` (default 1024, the block's own width), and cvkit's
    global-pool neck and linear head do the rest.

    Args:
        in_chans: input channels.
        out_indices: which stages to return; negative counts from the end.
        frozen_stages: how many leading stages get no gradient (0: none).
        out_channels: channels of the last block's last 1x1 conv, the backbone's output.
        dropout: dropout probability before the last block (0.5 in the release).
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_indices: tuple[int, ...] = (-1,),
        frozen_stages: int = 0,
        out_channels: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"NiN: in_chans must be at least 1, got {in_chans}")
        if out_channels < 1:
            raise ValueError(f"NiN: out_channels must be at least 1, got {out_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"NiN: dropout must be in [0, 1), got {dropout}")
        self.stages = nn.ModuleList(
            [
                nn.Sequential(mlpconv(in_chans, 96, 11, stride=4, padding=5), _pool()),
                nn.Sequential(mlpconv(96, 256, 5, padding=2), _pool()),
                nn.Sequential(mlpconv(256, 384, 3, padding=1), _pool()),
                nn.Sequential(
                    nn.Dropout(dropout), mlpconv(384, 1024, 3, padding=1, out_channels=out_channels)
                ),
            ]
        )
        specs = [(96, 8), (256, 16), (384, 32), (out_channels, 32)]
        self.set_outputs([FeatureSpec(c, s) for c, s in specs], out_indices)
        he_init(self)
        self.freeze(frozen_stages)
