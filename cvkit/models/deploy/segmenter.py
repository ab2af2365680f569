"""A semantic segmenter as a graph: uint8 images -> a class per pixel, at the file's size."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F

from cvkit.models.deploy.base import DeployGraph
from cvkit.structures import SegBatch


class SegmenterGraph(DeployGraph):
    """``images [B, C, H, W]``, ``out_size [2]`` -> ``mask [B, h, w]`` int64.

    ``out_size`` is the ``(h, w)`` the masks come back at: the image files' size (one for
    the batch; the input's own size when the images were not resized). The steps are
    ``Segmenter.predict``'s: the head's logits upsampled to the input (bilinear), resized to
    ``out_size`` (bilinear, on logits, so class borders stay smooth), then the argmax. Raw:
    ``logits [B, K, H, W]`` at the input's size.
    """

    task = "segmentation"
    input_names = ("images", "out_size")
    output_names = ("mask",)
    raw_names = ("logits",)

    def forward(
        self, images: torch.Tensor, out_size: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        x = m.preprocessor.graph_forward(images)
        logits = F.interpolate(m.head(m.backbone(x)), size=x.shape[-2:], mode="bilinear")
        height, width = images.shape[-2], images.shape[-1]
        if m.preprocessor.input_size is None:  # x is the input padded at bottom and right
            # cropped by a negative pad: a slice (a view) would make the trace guard on
            # whether the input was already a multiple of the stride
            padded_h, padded_w = logits.shape[-2], logits.shape[-1]
            logits = F.pad(logits, (0, width - padded_w, 0, height - padded_h))
        else:
            logits = F.interpolate(logits, size=(height, width), mode="bilinear")
        # sizes read from a tensor: symbolic, whatever their value, in the exported graph
        out_h, out_w = cast(int, out_size[0].item()), cast(int, out_size[1].item())
        torch._check(out_h >= 1)
        torch._check(out_w >= 1)
        resized = F.interpolate(logits.float(), size=(out_h, out_w), mode="bilinear")
        return resized.argmax(dim=1), logits

    def inputs_for(
        self, images: torch.Tensor, file_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, ...]:
        return images, torch.tensor(file_size or images.shape[-2:], dtype=torch.int64)

    def eager_outputs(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images, out_size = inputs
        b, size = len(images), (int(images.shape[-2]), int(images.shape[-1]))
        orig = (int(out_size[0]), int(out_size[1]))
        batch = SegBatch(images, None, [size] * b, [orig] * b, [str(i) for i in range(b)])
        return (torch.stack([p.mask for p in self.model.predict(batch)]),)

    def eager_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.model(images),)
