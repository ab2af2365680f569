"""LeNet-5: LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE, 1998.

Designed for 32x32 grey-level digits (MNIST's 28x28 padded to 32x32). The feature part is
C1 (6 maps, 5x5) -> S2 (2x2 subsampling) -> C3 (16 maps, 5x5) -> S4 -> C5 (120 maps, 5x5);
F6 and the output layer are the classifier and are left to cvkit's neck and head.
"""

from __future__ import annotations

from torch import nn

from cvkit.models.backbones.base import StagedBackbone
from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec


@BACKBONES.register()
class LeNet5(StagedBackbone):
    """LeNet-5's convolutional part in three stages.

    ===== ====================== ======== ======
    stage layers                 channels stride
    ===== ====================== ======== ======
    0     C1 conv5x5, S2 pool     6        2
    1     C3 conv5x5, S4 pool     16       4
    2     C5 conv5x5              120      4
    ===== ====================== ======== ======

    Shapes: ``Tensor[B, in_chans, H, W]`` -> stage ``i``: ``Tensor[B, C_i, ceil(H/s_i),
    ceil(W/s_i)]``; a 32x32 digit gives 6x16x16, 16x8x8 and 120x8x8.

    Deviations from the paper, each to make LeNet a backbone that works at any input size:

    * every 5x5 conv is padded by 2 ("same"), so a stage's map is exactly ``H/stride`` as
      ``FeatureSpec`` promises. The paper's convs are unpadded; on its 32x32 input C5 then
      sees a 5x5 map and outputs 1x1, which the global-pool neck stands in for.
    * C3 sees all 6 S2 maps (the paper's Table I connects each to only 3 or 4, to save
      connections and break symmetry); tanh replaces the scaled ``1.7159 tanh(2a/3)``; S2 and
      S4 are plain 2x2 average pools (the paper's had a trainable coefficient and bias each).

    Args:
        in_chans: input channels (1 for the paper's grey digits).
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
            raise ValueError(f"LeNet5: in_chans must be at least 1, got {in_chans}")
        # ceil_mode: an odd-sized map rounds up, so every stage is ceil(H/stride) exactly.
        self.stages = nn.ModuleList(
            [
                nn.Sequential(  # C1, S2
                    nn.Conv2d(in_chans, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2, ceil_mode=True)
                ),
                nn.Sequential(  # C3, S4
                    nn.Conv2d(6, 16, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2, ceil_mode=True)
                ),
                nn.Sequential(nn.Conv2d(16, 120, 5, padding=2), nn.Tanh()),  # C5
            ]
        )
        self.set_outputs([FeatureSpec(6, 2), FeatureSpec(16, 4), FeatureSpec(120, 4)], out_indices)
        self.freeze(frozen_stages)
