"""Semantic segmenter: backbone -> head (e.g. FCN) -> bilinear upsampling -> per-pixel logits."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.segmentation import SegCrossEntropyLoss
from cvkit.models.preprocessor import Preprocessor
from cvkit.registry import MODELS
from cvkit.structures import SegBatch, SegPrediction


@MODELS.register()
class Segmenter(nn.Module):
    """A semantic-segmentation model composed of built parts.

    Args:
        backbone: returns ``list[Tensor[B, C_i, H/s_i, W/s_i]]`` and has ``feature_info``.
        head: the backbone's maps -> logits ``Tensor[B, K, H/o, W/o]`` at some stride ``o``
            (e.g. ``FCNHead``), with ``num_classes``.
        loss: logits ``[B, K, H, W]`` and masks ``[B, H, W]`` -> scalar; default
            ``SegCrossEntropyLoss(ignore_index)``.
        aux_head: an optional second head on the same maps (e.g. an ``FCNHead`` with
            ``in_index: -2``), trained with the same loss times ``aux_weight`` and unused in
            prediction (torchvision's ``aux_loss``).
        aux_weight: factor of the auxiliary loss.
        preprocessor: normalises and pads; default ImageNet mean/std, padded to the
            backbone's coarsest stride so every map's size is exact.
        ignore_index: mask value of pixels without a label (also the batch padding, 255);
            must agree with the loss's.

    The head's logits are upsampled to the input size by bilinear interpolation
    (``align_corners=False``), fixed as the paper's last layer is, then cropped to the
    batch's size; ``loss`` and the evaluation score every pixel of the batched masks.
    ``loss(batch)`` and ``predict(batch)`` behave the same in train and eval mode.
    """

    task = "segmentation"
    # components are duck-typed (any backbone with feature_info, any head with num_classes)
    backbone: Any
    head: Any
    aux_head: Any
    loss_fn: nn.Module

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        aux_head: nn.Module | None = None,
        aux_weight: float = 0.4,
        preprocessor: Preprocessor | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.aux_head = backbone, head, aux_head
        strides = [f.stride for f in self.backbone.feature_info]
        self.preprocessor = preprocessor or Preprocessor(size_divisor=max(strides))
        self.loss_fn = loss or SegCrossEntropyLoss(ignore_index=ignore_index)
        self.aux_weight, self.ignore_index = aux_weight, ignore_index
        if aux_head is not None and aux_head.num_classes != head.num_classes:
            raise ValueError(
                f"Segmenter: the aux_head predicts {aux_head.num_classes} classes and the head "
                f"{head.num_classes}; set model.aux_head.num_classes={head.num_classes}"
            )
        loss_ignore = getattr(self.loss_fn, "ignore_index", ignore_index)
        if loss_ignore != ignore_index:
            raise ValueError(
                f"Segmenter: ignore_index={ignore_index} but the loss ignores {loss_ignore}; "
                "set both to the value that marks unlabelled pixels"
            )

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def reset_head(self, num_classes: int) -> None:
        """Fresh class layers for ``num_classes`` in the head and aux head."""
        for head in (self.head, self.aux_head):
            if head is not None:
                head.reset_head(num_classes)

    def forward(
        self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """Args: images (Tensor[B, 3, H, W] uint8); image_sizes, each image's size before the
        batch padding. Returns: logits (Tensor[B, K, H, W])."""
        return self._logits(images, image_sizes, with_aux=False)[0]

    def _logits(
        self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None, with_aux: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main (and auxiliary) logits ``Tensor[B, K, H, W]`` at the batch's size."""
        # a resizing preprocessor moves the pixels, so its padding zone would be wrong there
        resized = self.preprocessor.input_size is not None
        x = self.preprocessor(images, None if resized else image_sizes)
        feats = self.backbone(x)
        logits = self._to_batch_size(self.head(feats), x, images)
        aux = None
        if with_aux and self.aux_head is not None:
            aux = self._to_batch_size(self.aux_head(feats), x, images)
        return logits, aux

    def _to_batch_size(
        self, logits: torch.Tensor, x: torch.Tensor, images: torch.Tensor
    ) -> torch.Tensor:
        """Logits at a stride -> at the preprocessed size -> at the batch's size ``[H, W]``."""
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h, w = images.shape[-2:]
        if self.preprocessor.input_size is None:  # x is the batch padded at bottom/right
            return logits[..., :h, :w]
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)

    def loss(self, batch: SegBatch) -> dict[str, torch.Tensor]:
        """``{"loss_seg"}``, plus ``"loss_aux"`` (already weighted) with an aux head."""
        return self.loss_and_logits(batch)[0]

    def loss_and_logits(self, batch: SegBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The losses and the main logits ``Tensor[B, K, H, W]`` from one forward pass, so
        evaluation scores the same logits it takes the loss of."""
        if batch.masks is None:
            raise ValueError("Segmenter.loss needs masks; this batch has none")
        logits, aux = self._logits(batch.images, batch.image_sizes, with_aux=True)
        losses = {"loss_seg": self.loss_fn(logits, batch.masks)}
        if aux is not None:
            losses["loss_aux"] = self.aux_weight * self.loss_fn(aux, batch.masks)
        return losses, logits

    @torch.no_grad()
    def predict(self, batch: SegBatch, with_probs: bool = False) -> list[SegPrediction]:
        """One ``SegPrediction`` per image, on the CPU, in the original file's pixels.

        Each image's logits are cropped to its size before padding, resized bilinearly to
        ``orig_size`` (logits, not the argmax, so class borders stay smooth), then the argmax
        is taken. ``with_probs`` adds the softmax ``Tensor[K, h, w]``.
        """
        return self._predictions(self(batch.images, batch.image_sizes), batch, with_probs)

    def loss_and_predict(
        self, batch: SegBatch
    ) -> tuple[dict[str, torch.Tensor], list[SegPrediction]]:
        """``loss(batch)`` and ``predict(batch)`` from one forward pass (evaluation)."""
        losses, logits = self.loss_and_logits(batch)
        with torch.no_grad():
            return losses, self._predictions(logits.detach(), batch, with_probs=False)

    def _predictions(
        self, logits: torch.Tensor, batch: SegBatch, with_probs: bool
    ) -> list[SegPrediction]:
        """Batch logits ``Tensor[B, K, H, W]`` -> per image, at its ``orig_size``."""
        out = []
        for i, ((h, w), orig) in enumerate(zip(batch.image_sizes, batch.orig_sizes)):
            one = logits[i : i + 1, :, :h, :w].float()
            if (h, w) != tuple(orig):
                one = F.interpolate(one, size=tuple(orig), mode="bilinear", align_corners=False)
            probs = one[0].softmax(dim=0).cpu() if with_probs else None
            out.append(SegPrediction(one[0].argmax(dim=0).cpu(), probs, batch.names[i]))
        return out
