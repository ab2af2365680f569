"""RoIAlign over pyramid levels with the levels' strides known, for exported graphs.

``torchvision.ops.MultiScaleRoIAlign`` infers each level's scale from the feature and image
sizes with Python floats, which a graph of symbolic sizes cannot do. A cvkit detector pads
its input to a multiple of the coarsest stride, so the scale it infers is exactly
``1 / stride``; with the strides given, the same pooling is a few tensor ops around
``torchvision.ops.roi_align`` (exported as ONNX ``RoiAlign``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision

# FPN paper eq. 1, as torchvision's LevelMapper: a 224 px box is pooled from level 4
CANONICAL_SIZE, CANONICAL_LEVEL, EPS = 224.0, 4.0, 1e-6


def pyramid_roi_align(
    feats: Sequence[torch.Tensor],
    strides: Sequence[int],
    rois: torch.Tensor,
    batch_index: torch.Tensor,
    output_size: int,
    sampling_ratio: int,
) -> torch.Tensor:
    """Pool every RoI from the level its size picks: ``MultiScaleRoIAlign``'s result.

    Args:
        feats: the levels RoIs are pooled from, ``Tensor[B, C, H_l, W_l]``, finest first.
        strides: each level's stride, powers of two.
        rois: ``Tensor[R, 4]`` ``xyxy`` in input pixels.
        batch_index: ``Tensor[R]`` the image of each RoI.

    Returns:
        ``Tensor[R, C, output_size, output_size]``.
    """
    k_min, k_max = math.log2(strides[0]), math.log2(strides[-1])
    side = ((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])).sqrt()
    level = torch.floor(CANONICAL_LEVEL + torch.log2(side / CANONICAL_SIZE) + EPS)
    level = (level.clamp(k_min, k_max) - k_min).to(torch.int64)
    indexed = torch.cat([batch_index[:, None].to(rois.dtype), rois], dim=1)
    out = rois.new_zeros((rois.shape[0], feats[0].shape[1], output_size, output_size))
    for i, (feat, stride) in enumerate(zip(feats, strides)):
        pooled = torchvision.ops.roi_align(
            feat, indexed, output_size, spatial_scale=1.0 / stride, sampling_ratio=sampling_ratio
        )
        out = torch.where((level == i)[:, None, None, None], pooled, out)
    return out
