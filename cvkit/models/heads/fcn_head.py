"""FCN head (Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015): 1x1 class scores on the coarsest map, optionally fused with the
scores of finer maps through 2x transposed convolutions initialised to bilinear upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.registry import HEADS

# variant -> number of finer maps fused (each at half the stride of the one before)
VARIANTS = {"32s": 0, "16s": 1, "8s": 2}


def bilinear_kernel(size: int) -> torch.Tensor:
    """The 2-D bilinear interpolation kernel of a transposed convolution: ``Tensor[size, size]``.

    For ``size = 2 * factor`` and ``stride = factor``, ``padding = factor // 2``, the
    transposed convolution upsamples by ``factor`` exactly like ``F.interpolate(...,
    mode="bilinear", align_corners=False)`` away from the borders (the FCN reference code's
    ``upsample_filt``).

    Example:
        >>> bilinear_kernel(4)[0]
        tensor([0.0625, 0.1875, 0.1875, 0.0625])
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    return ramp[:, None] * ramp[None, :]


def bilinear_upsample(channels: int, learnable: bool = True) -> nn.ConvTranspose2d:
    """A 2x upsampling ``ConvTranspose2d(channels, channels, 4, stride=2, padding=1)``, no bias,
    initialised to bilinear interpolation of each channel on its own (zero across channels).

    Args:
        channels: ``K`` (class scores in, class scores out).
        learnable: ``False`` freezes the weights (``requires_grad=False``): a fixed bilinear
            upsampling. The paper learns the intermediate 2x layers from this start.

    Shapes: ``Tensor[B, K, H, W]`` -> ``Tensor[B, K, 2H, 2W]``.
    """
    up = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.zero_()
        # weight is [in, out, kH, kW]; the diagonal maps each class's score onto itself
        up.weight[range(channels), range(channels)] = bilinear_kernel(4)
    up.weight.requires_grad_(learnable)
    return up


@HEADS.register()
class FCNHead(nn.Module):
    """Per-pixel class logits from a backbone's maps: FCN-32s, -16s or -8s.

    The coarsest map used (``in_index``, stride ``s``) gets an optional conv block
    (``channels``), dropout and a 1x1 class "score" conv. For ``"16s"`` the scores are
    upsampled 2x by a bilinear-initialised transposed conv and added to the 1x1 score of the
    map at stride ``s/2``; ``"8s"`` repeats that with the map at ``s/4``. The names follow
    the paper, where ``s = 32``; on a stride-16 map ``"32s"`` simply means no fusion. The
    head returns logits at the finest fused stride (``output_stride``); the ``Segmenter``
    upsamples them to the input size with fixed bilinear interpolation, which is what the
    paper's last, frozen bilinear deconvolution computes (and correct at the borders, for
    any size).

    As in the paper, every score conv starts at zero: the network starts from uniform
    predictions, and a skip's fusion starts as the coarser prediction unchanged.

    Args:
        in_channels: channels of every backbone map (wired from the backbone).
        in_strides: stride of every backbone map (wired from the backbone).
        num_classes: ``K``, every class including any background class the data has.
        variant: ``"32s"``, ``"16s"`` or ``"8s"``; the maps at ``s/2`` (and ``s/4``) must be
            among the backbone's outputs (its ``out_indices``).
        in_index: which map is the coarsest one used (negative counts from the end); e.g.
            ``-2`` for an auxiliary head on the stride-16 map.
        channels: ``None``: the paper's 1x1 score conv directly on the map. An int: first a
            3x3 conv to this many channels + BatchNorm + ReLU (torchvision's ``FCNHead``).
        dropout: dropout probability before the score conv of the coarsest map.
        learnable_upsample: learn the 2x transposed convs (the paper) or keep them bilinear.

    Shapes: ``[Tensor[B, C_i, H/s_i, W/s_i]]`` -> ``Tensor[B, K, H/o, W/o]``, ``o`` =
    ``output_stride``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        num_classes: int,
        variant: Literal["32s", "16s", "8s"] = "32s",
        in_index: int = -1,
        channels: int | None = None,
        dropout: float = 0.1,
        learnable_upsample: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"FCNHead: num_classes must be at least 1, got {num_classes}")
        if variant not in VARIANTS:
            raise ValueError(f"FCNHead: variant must be one of {list(VARIANTS)}, got {variant!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FCNHead: dropout must be in [0, 1), got {dropout}")
        if len(in_channels) != len(in_strides):
            raise ValueError(
                f"FCNHead: {len(in_channels)} in_channels but {len(in_strides)} in_strides"
            )
        n = len(in_channels)
        if not -n <= in_index < n:
            raise ValueError(f"FCNHead: in_index {in_index} is outside the {n} input maps")
        self.in_channels, self.in_strides = list(in_channels), list(in_strides)
        self.variant, self.learnable_upsample = variant, learnable_upsample
        self.in_index = in_index % n
        self.skip_indices = self._skip_indices(VARIANTS[variant])
        self.output_stride = self.in_strides[([self.in_index, *self.skip_indices])[-1]]
        top = self.in_channels[self.in_index]
        if channels is None:
            self.block: nn.Module = nn.Identity()
        else:
            self.block = nn.Sequential(
                nn.Conv2d(top, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
        self.score_in = top if channels is None else channels
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.reset_head(num_classes)

    def _skip_indices(self, num_skips: int) -> list[int]:
        """Positions of the maps at strides ``s/2``, ``s/4``, ... for the skips."""
        stride, found = self.in_strides[self.in_index], []
        for _ in range(num_skips):
            if stride % 2 or stride // 2 not in self.in_strides:
                raise ValueError(
                    f"FCNHead: variant {self.variant!r} on the stride-"
                    f"{self.in_strides[self.in_index]} map needs a map at stride "
                    f"{stride / 2:g}, but the backbone gives strides {self.in_strides}; add "
                    "that stage to the backbone's out_indices or choose a coarser variant"
                )
            stride //= 2
            found.append(self.in_strides.index(stride))
        return found

    def reset_head(self, num_classes: int) -> None:
        """Fresh score convs (zero) and upsamplings (bilinear) for ``num_classes``; the
        conv block is kept."""
        old = getattr(self, "score", None)  # None while __init__ runs
        self.num_classes = num_classes
        self.score = _zero_conv1x1(self.score_in, num_classes)
        self.skip_scores = nn.ModuleList(
            _zero_conv1x1(self.in_channels[i], num_classes) for i in self.skip_indices
        )
        self.upsamples = nn.ModuleList(
            bilinear_upsample(num_classes, self.learnable_upsample) for _ in self.skip_indices
        )
        if old is not None:  # a head already moved to a device keeps it
            self.to(old.weight.device)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Args: feats, one map per ``in_channels`` entry. Returns: logits at
        ``output_stride``."""
        if len(feats) != len(self.in_channels):
            raise ValueError(
                f"FCNHead: got {len(feats)} maps, built for {len(self.in_channels)} "
                f"(strides {self.in_strides})"
            )
        score = self.score(self.dropout(self.block(feats[self.in_index])))
        for up, skip_score, i in zip(self.upsamples, self.skip_scores, self.skip_indices):
            skip = skip_score(feats[i])
            score = _fit(up(score), skip.shape[-2:]) + skip
        return score


def _zero_conv1x1(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(cast(torch.Tensor, conv.bias))  # Conv2d's bias=True default: never None
    return conv


def _fit(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``x`` cropped (bottom/right, the paper's crop layer) or, where it is smaller,
    resized to ``size``. Inputs padded to the coarsest stride never need either."""
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return x[..., : size[0], : size[1]]
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
