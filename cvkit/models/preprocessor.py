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
        size_divisor: pad the batch (with zeros, after normalising) so height and width are
            multiples of this: a detector's coarsest stride.
        pad_to: pad every batch to this square size instead. On CPU, oneDNN prepares its
            kernels for each new input shape (seconds for a detector's backward pass), so
            batches of varying size are far slower than one fixed size.

    Shapes: ``Tensor[B, C, H, W]`` uint8 (or float on 0..255) -> ``Tensor[B, C, H, W]`` float.
    """

    mean: torch.Tensor  # buffers, [1, C, 1, 1] on the 0..255 scale
    std: torch.Tensor

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int | None = None,
        size_divisor: int = 1,
        pad_to: int | None = None,
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
        if size_divisor < 1:
            raise ValueError(f"size_divisor must be positive, got {size_divisor}")
        if pad_to is not None and pad_to % size_divisor:
            raise ValueError(f"pad_to={pad_to} must be a multiple of size_divisor={size_divisor}")
        self.input_size = input_size
        self.pad_to = pad_to
        self.size_divisor = size_divisor
        # buffers: they follow .to(device) and are saved in the state dict
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(
        self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """Args: images (Tensor[B, C, H, W] uint8); image_sizes: each image's (h, w) before
        the batch's padding, whose pixels are set to 0 after normalising (as if padded then)."""
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
        if image_sizes is not None:
            for i, (h, w) in enumerate(image_sizes):
                x[i, :, h:, :] = 0
                x[i, :, :, w:] = 0
        pad_h, pad_w = self._padding(x.shape[-2], x.shape[-1])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x

    def graph_forward(self, images: torch.Tensor) -> torch.Tensor:
        """``forward(images)`` for an exported graph, whose height and width are symbolic:
        resizing (with ``input_size``) and padding always run, as no-ops when the size
        already fits, so no step depends on the traced size. Same shapes as ``forward``."""
        x = (images.float() - self.mean) / self.std
        if self.input_size is not None:
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        pad_h, pad_w = self._padding(x.shape[-2], x.shape[-1])
        return F.pad(x, (0, pad_w, 0, pad_h))

    def _padding(self, h: int, w: int) -> tuple[int, int]:
        if self.pad_to is None:
            # the padded size written as a multiple of the divisor, ``ceil(h / d) * d``: at a
            # symbolic size (an export) every strided layer then visibly divides it
            # (``-h % d`` is the same number, but hides that)
            d = self.size_divisor
            return (h + d - 1) // d * d - h, (w + d - 1) // d * d - w
        if h > self.pad_to or w > self.pad_to:
            raise ValueError(
                f"a batch of {h}x{w} images does not fit pad_to={self.pad_to}; raise "
                "model.preprocessor.pad_to or resize the images in the data transforms"
            )
        return self.pad_to - h, self.pad_to - w
