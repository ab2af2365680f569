"""The model's own input preparation, so a checkpoint carries all that prediction needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.registry import PREPROCESSORS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@PREPROCESSORS.register()
class Preprocessor(nn.Module):
    """uint8 RGB images -> normalised float images.

    Args:
        mean: per-channel mean, on the 0..1 scale.
        std: per-channel standard deviation, on the 0..1 scale.
        input_size: if set, images of another size are resized (bilinear, antialiased) to
            this square size, so prediction on any image matches training.

    Shapes: ``Tensor[B, C, H, W]`` uint8 (or float on 0..255) -> ``Tensor[B, C, H, W]`` float.
    """

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(
                f"mean has {len(mean)} values and std {len(std)}; give one per channel"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {tuple(std)}")
        if input_size is not None and input_size < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.input_size = input_size
        # buffers: they follow .to(device) and are saved in the state dict
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"images have {images.shape[1]} channels; the preprocessor expects "
                f"{self.mean.shape[1]} (set mean/std with one value per channel)"
            )
        x = (images.float() - self.mean) / self.std
        size = self.input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return x
