"""Image classifier: backbone -> neck (global pooling) -> head -> logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvkit.models.losses.cross_entropy import CrossEntropyLoss
from cvkit.models.preprocessor import Preprocessor
from cvkit.registry import MODELS
from cvkit.structures import ClsBatch, ClsPrediction


@MODELS.register()
class ImageClassifier(nn.Module):
    """A classifier composed of built parts.

    Args:
        backbone: returns ``list[Tensor[B, C_i, H_i, W_i]]`` and has ``feature_info``.
        neck: pools the maps to ``Tensor[B, C]`` (e.g. ``GlobalPool``).
        head: ``Tensor[B, C]`` -> logits ``Tensor[B, K]`` (e.g. ``ClsHead``).
        loss: logits and labels -> scalar; default ``CrossEntropyLoss()``.
        preprocessor: uint8 images -> normalised floats; default ImageNet mean/std.

    ``loss(batch)``, ``predict(batch)`` and ``loss_and_predict(batch)`` (both from one forward
    pass) do the same thing in train and eval mode; only layers such as dropout and batch norm
    follow the mode.

    When the backbone has a ``pretrained_head`` (the classifier of its pretrained weights) and
    the head has ``load_pretrained_head``, the head receives it once, here: tensors that fit
    are copied, the others (another number of classes) are dropped and logged.
    """

    task = "classification"
    # components are duck-typed (any backbone with feature_info, any head with num_classes)
    backbone: Any
    head: Any
    loss_fn: nn.Module

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        preprocessor: Preprocessor | None = None,
    ) -> None:
        super().__init__()
        self.preprocessor = preprocessor or Preprocessor()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.loss_fn = loss or CrossEntropyLoss()
        pretrained_head = getattr(backbone, "pretrained_head", None)
        if pretrained_head and hasattr(head, "load_pretrained_head"):
            self.head.load_pretrained_head(pretrained_head)

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def reset_head(self, num_classes: int) -> None:
        """A new, Xavier-initialised head for ``num_classes`` (the backbone is kept)."""
        self.head.reset_head(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images (Tensor[B, 3, H, W] uint8). Returns: logits (Tensor[B, K])."""
        return self.head(self.neck(self.backbone(self.preprocessor(images))))

    def loss(self, batch: ClsBatch) -> dict[str, torch.Tensor]:
        """Returns ``{"loss_cls": scalar}``; needs ``batch.labels``."""
        return self._loss(self(batch.images), batch)

    @torch.no_grad()
    def predict(self, batch: ClsBatch) -> list[ClsPrediction]:
        """One ``ClsPrediction`` per image, with the class probabilities."""
        return _predictions(self(batch.images))

    def loss_and_predict(
        self, batch: ClsBatch
    ) -> tuple[dict[str, torch.Tensor], list[ClsPrediction]]:
        """``loss(batch)`` and ``predict(batch)`` from one forward pass (evaluation)."""
        logits = self(batch.images)
        return self._loss(logits, batch), _predictions(logits.detach())

    def _loss(self, logits: torch.Tensor, batch: ClsBatch) -> dict[str, torch.Tensor]:
        if batch.labels is None:
            raise ValueError("ImageClassifier.loss needs labels; this batch has none")
        return {"loss_cls": self.loss_fn(logits, batch.labels)}


def _predictions(logits: torch.Tensor) -> list[ClsPrediction]:
    """Logits ``Tensor[B, K]`` -> one ``ClsPrediction`` per row (probabilities on the CPU)."""
    probs = logits.float().softmax(dim=1)
    scores, labels = probs.max(dim=1)
    return [
        ClsPrediction(p, int(lbl), float(s))
        for p, lbl, s in zip(probs.cpu(), labels.tolist(), scores.tolist())
    ]
