"""VGG-11: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (configuration A of Table 1).

Designed for 224x224 RGB crops. Eight 3x3 convs (stride 1, padding 1) with ReLU, in five
blocks of 64, 128, 256, 512 and 512 channels, each block closed by a 2x2/2 max pool. The three
fully-connected layers are the classifier and are left to cvkit's neck and head.
"""

from __future__ import annotations

from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec
from cvkit_classic.weight_init import he_init

# Configuration A: the conv widths of each block (each block ends with a max pool).
VGG11_BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))


@BACKBONES.register()
class VGG11(StagedBackbone):
    """VGG-11's conv part, one stage per pooled block.

    ===== ======================= ======== ======
    stage layers                  channels stride
    ===== ======================= ======== ======
    0     conv3-64, pool          64       2
    1     conv3-128, pool         128      4
    2     conv3-256 x2, pool      256      8
    3     conv3-512 x2, pool      512      16
    4     conv3-512 x2, pool      512      32
    ===== ======================= ======== ======

    Shapes: ``Tensor[B, in_chans, H, W]`` -> stage ``i``: ``Tensor[B, C_i, ceil(H/s_i),
    ceil(W/s_i)]``; 224x224 gives 512x7x7 at the end, 32x32 gives 512x1x1.

    Deviations from the paper: the pools round odd sizes up (``ceil_mode``), so every map is
    ``ceil(H/stride)``; even sizes, such as the paper's 224, are unaffected. ``batch_norm=True``
    adds batch normalisation after each conv (not in the paper; the common "vgg11_bn").

    Args:
        in_chans: input channels.
        out_indices: which stages to return; negative counts from the end.
        frozen_stages: how many leading stages get no gradient (0: none).
        batch_norm: put a ``BatchNorm2d`` between each conv and its ReLU.
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_indices: tuple[int, ...] = (-1,),
        frozen_stages: int = 0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"VGG11: in_chans must be at least 1, got {in_chans}")
        stages, specs, channels, stride = [], [], in_chans, 1
        for widths in VGG11_BLOCKS:
            layers: list[nn.Module] = []
            for width in widths:
                layers.append(nn.Conv2d(channels, width, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                channels = width
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            stride *= 2
            stages.append(nn.Sequential(*layers))
            specs.append(FeatureSpec(channels, stride))
        self.stages = nn.ModuleList(stages)
        self.set_outputs(specs, out_indices)
        he_init(self)
        self.freeze(frozen_stages)
