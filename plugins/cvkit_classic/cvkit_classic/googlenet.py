"""GoogLeNet (Inception v1): Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.

Designed for 224x224 RGB crops. A conv stem (7x7/2, then 1x1 and 3x3 with local response
normalisation) and nine Inception modules, in groups of 2, 5 and 2 between 3x3/2 max pools
(Table 1 and Figure 3 of the paper). The average pool, dropout and linear layer are the
classifier and are left to cvkit's neck and head; the two auxiliary classifiers, a training
aid, are not built.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec
from cvkit_classic.weight_init import he_init

# Table 1 of the paper, one row per Inception module:
# #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_3 = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
}
INCEPTION_4 = {
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
}
INCEPTION_5 = {
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """A conv padded to keep ``ceil(H/stride)``, then ReLU (every conv in GoogLeNet has one)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def _pool() -> nn.MaxPool2d:
    # 3x3/2 max pooling padded by 1: the map is ceil(H/2) for every H. The paper's (Caffe's)
    # unpadded ceil-mode pool gives the same sizes at 224x224, but fails on maps under 3x3.
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


def _lrn() -> nn.LocalResponseNorm:
    # The paper gives no parameters; these are its Caffe release's (same alpha/n convention).
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class Inception(nn.Module):
    """The Inception module (Figure 2b): four branches whose outputs are concatenated.

    1x1 conv | 1x1 reduce -> 3x3 conv | 1x1 reduce -> 5x5 conv | 3x3/1 max pool -> 1x1 proj.

    Shapes: ``Tensor[B, in_channels, H, W]`` -> ``Tensor[B, out_channels, H, W]`` with
    ``out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj``.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = _conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(
            _conv(in_channels, ch3x3_reduce, 1), _conv(ch3x3_reduce, ch3x3, 3)
        )
        self.branch3 = nn.Sequential(
            _conv(in_channels, ch5x5_reduce, 1), _conv(ch5x5_reduce, ch5x5, 5)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1), _conv(in_channels, pool_proj, 1)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


def _inception_group(in_channels: int, rows: Mapping[str, tuple[int, ...]]) -> nn.Sequential:
    """A 3x3/2 max pool, then one Inception module per row of Table 1."""
    layers: dict[str, nn.Module] = {"pool": _pool()}
    for name, row in rows.items():
        layers[f"inception{name}"] = module = Inception(in_channels, *row)
        in_channels = module.out_channels
    return nn.Sequential(OrderedDict(layers))


@BACKBONES.register()
class GoogLeNet(StagedBackbone):
    """GoogLeNet's feature part, one stage per resolution.

    ===== ============================================== ======== ======
    stage layers                                         channels stride
    ===== ============================================== ======== ======
    0     conv 7x7/2                                     64       2
    1     pool, LRN, conv 1x1 (64), conv 3x3, LRN        192      4
    2     pool, inception 3a, 3b                         480      8
    3     pool, inception 4a, 4b, 4c, 4d, 4e             832      16
    4     pool, inception 5a, 5b                         1024     32
    ===== ============================================== ======== ======

    Shapes: ``Tensor[B, in_chans, H, W]`` -> stage ``i``: ``Tensor[B, C_i, ceil(H/s_i),
    ceil(W/s_i)]``; 224x224 gives 1024x7x7 at the end, as in Table 1.

    Deviations from the paper: max pools are padded rather than ceil-mode (see ``_pool``);
    no auxiliary classifiers. The 5x5 branch really is 5x5 and there is no batch norm, as in
    the paper (torchvision's ``googlenet`` differs on both).

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
            raise ValueError(f"GoogLeNet: in_chans must be at least 1, got {in_chans}")
        self.stages = nn.ModuleList(
            [
                _conv(in_chans, 64, 7, stride=2),
                nn.Sequential(_pool(), _lrn(), _conv(64, 64, 1), _conv(64, 192, 3), _lrn()),
                _inception_group(192, INCEPTION_3),
                _inception_group(480, INCEPTION_4),
                _inception_group(832, INCEPTION_5),
            ]
        )
        specs = [(64, 2), (192, 4), (480, 8), (832, 16), (1024, 32)]
        self.set_outputs([FeatureSpec(c, s) for c, s in specs], out_indices)
        he_init(self)
        self.freeze(frozen_stages)
