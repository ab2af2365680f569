"""ResNet-18: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

Designed for 224x224 RGB crops. A 7x7/2 conv stem and 3x3/2 max pool, then four stages of two
BasicBlocks (two 3x3 convs with batch norm and an identity shortcut) of 64, 128, 256 and 512
channels; each stage after the first halves the resolution in its first block (Table 1). The
average pool and the linear layer are the classifier and are left to cvkit's neck and head.
"""

from __future__ import annotations

import torch
from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec
from cvkit_classic.weight_init import he_init


class BasicBlock(nn.Module):
    """``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``.

    The shortcut is the identity, or where the block changes resolution or width, a 1x1
    conv with batch norm (the paper's option B).

    Shapes: ``Tensor[B, in_channels, H, W]`` -> ``Tensor[B, out_channels, ceil(H/stride),
    ceil(W/stride)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


@BACKBONES.register()
class ResNet18(StagedBackbone):
    """ResNet-18 without its classifier, in five stages (the paper's conv1 to conv5_x).

    ===== ==================================== ======== ======
    stage layers                               channels stride
    ===== ==================================== ======== ======
    0     conv1: conv 7x7/2, BN, ReLU          64       2
    1     conv2_x: max pool 3x3/2, 2 blocks    64       4
    2     conv3_x: 2 blocks                    128      8
    3     conv4_x: 2 blocks                    256      16
    4     conv5_x: 2 blocks                    512      32
    ===== ==================================== ======== ======

    Shapes: ``Tensor[B, in_chans, H, W]`` -> stage ``i``: ``Tensor[B, C_i, ceil(H/s_i),
    ceil(W/s_i)]``; 224x224 gives 512x7x7 at the end, 32x32 gives 512x1x1.

    No deviations: where a block changes shape its shortcut is a 1x1 projection (the paper's
    option B; its Table 2 used zero-padding, option A), as in torchvision's ``resnet18``,
    whose parameters this has one for one.

    Args:
        in_chans: input channels.
        out_indices: which stages to return; negative counts from the end.
        frozen_stages: how many leading stages get no gradient (0: none).
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_indices: tuple[int, ...] = (-1,),
        frozen_stages: int = 0,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"ResNet18: in_chans must be at least 1, got {in_chans}")
        stem = nn.Sequential(
            nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.ModuleList(
            [
                stem,
                nn.Sequential(
                    nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                    BasicBlock(64, 64),
                    BasicBlock(64, 64),
                ),
                nn.Sequential(BasicBlock(64, 128, stride=2), BasicBlock(128, 128)),
                nn.Sequential(BasicBlock(128, 256, stride=2), BasicBlock(256, 256)),
                nn.Sequential(BasicBlock(256, 512, stride=2), BasicBlock(512, 512)),
            ]
        )
        specs = [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)]
        self.set_outputs([FeatureSpec(c, s) for c, s in specs], out_indices)
        he_init(self)
        self.freeze(frozen_stages)
