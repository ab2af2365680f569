"""AlexNet: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NeurIPS 2012.

Designed for 224x224 RGB crops (the arithmetic of the paper's conv1 only works for 227x227).
Five conv layers, 96-256-384-384-256 wide, with ReLU, local response normalisation after
conv1 and conv2, and overlapping 3x3/2 max pooling after conv1, conv2 and conv5. The three
fully-connected layers are the classifier and are left to cvkit's neck and head.
"""

from __future__ import annotations

from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec
from cvkit_classic.weight_init import he_init


def _conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> nn.Sequential:
    """Conv then ReLU."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def _lrn() -> nn.LocalResponseNorm:
    # The paper's k=2, n=5, alpha=1e-4, beta=0.75. PyTorch divides alpha by n; the paper does
    # not, so alpha is given as n * 1e-4.
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


def _pool() -> nn.MaxPool2d:
    # The paper's overlapping 3x3/2 pooling, padded by 1 so the map is ceil(H/2): unpadded,
    # a 32x32 input would shrink to 0x0 before conv3.
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


@BACKBONES.register()
class AlexNet(StagedBackbone):
    """AlexNet's five conv layers, one stage each.

    ===== ============================== ======== ======
    stage layers                         channels stride
    ===== ============================== ======== ======
    0     conv1 11x11/4, LRN, pool       96       8
    1     conv2 5x5, LRN, pool           256      16
    2     conv3 3x3                      384      16
    3     conv4 3x3                      384      16
    4     conv5 3x3, pool                256      32
    ===== ============================== ======== ======

    Shapes: ``Tensor[B, in_chans, H, W]`` -> stage ``i``: ``Tensor[B, C_i, ceil(H/s_i),
    ceil(W/s_i)]``; 224x224 gives 256x7x7 at the end (the paper's 227x227 gives 6x6).

    Deviations from the paper: conv1 is padded by 5 and the pools by 1, so every map is
    ``ceil(H/stride)`` and a 32x32 input still reaches conv5 (at 1x1); the weights are the
    same. By default every conv sees all channels; ``grouped=True`` restores the paper's
    two-GPU split (conv2, conv4 and conv5 see only the half of their input on their GPU).

    Args:
        in_chans: input channels.
        out_indices: which stages to return; negative counts from the end.
        frozen_stages: how many leading stages get no gradient (0: none).
        grouped: split conv2, conv4 and conv5 into two groups, as trained on two GPUs.
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_indices: tuple[int, ...] = (-1,),
        frozen_stages: int = 0,
        grouped: bool = False,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"AlexNet: in_chans must be at least 1, got {in_chans}")
        g = 2 if grouped else 1
        self.stages = nn.ModuleList(
            [
                nn.Sequential(_conv(in_chans, 96, 11, stride=4, padding=5), _lrn(), _pool()),
                nn.Sequential(_conv(96, 256, 5, padding=2, groups=g), _lrn(), _pool()),
                _conv(256, 384, 3, padding=1),
                _conv(384, 384, 3, padding=1, groups=g),
                nn.Sequential(_conv(384, 256, 3, padding=1, groups=g), _pool()),
            ]
        )
        specs = [(96, 8), (256, 16), (384, 16), (384, 16), (256, 32)]
        self.set_outputs([FeatureSpec(c, s) for c, s in specs], out_indices)
        he_init(self)
        self.freeze(frozen_stages)
