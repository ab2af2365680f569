"""Two-stage detector (Faster R-CNN): backbone -> FPN -> RPN proposals -> RoI head."""

from __future__ import annotations

import torch
from torch import nn

from cvkit.models.heads.roi_head import RoIHead
from cvkit.models.heads.rpn_head import RPNHead
from cvkit.models.preprocessor import Preprocessor
from cvkit.models.task_utils.det_utils import to_original
from cvkit.registry import MODELS
from cvkit.structures import DetBatch, DetPrediction


@MODELS.register()
class TwoStageDetector(nn.Module):
    """Proposals from a region proposal network, classified and refined by a RoI head.

    Args:
        backbone: returns ``list[Tensor]`` and has ``feature_info``.
        neck: e.g. ``FPN``; every level has the same channels.
        rpn_head: scores anchors and proposes boxes (``RPNHead``), with its own loss.
        roi_head: classifies and refines the proposals (``RoIHead``), with its own loss.
        preprocessor: normalises and pads to the coarsest stride.

    ``loss`` returns the RPN's and the RoI head's terms (``loss_rpn_cls``, ``loss_rpn_box``,
    ``loss_roi_cls``, ``loss_roi_box``); the proposals the RoI head trains on carry no
    gradient (approximate joint training, as in torchvision and Detectron2).
    """

    task = "detection"

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        rpn_head: RPNHead,
        roi_head: RoIHead,
        preprocessor: Preprocessor | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.rpn_head, self.roi_head = rpn_head, roi_head
        strides = [f.stride for f in neck.feature_info]
        if rpn_head.strides is None:
            rpn_head.strides = strides
        self.preprocessor = preprocessor or Preprocessor(size_divisor=max(strides))

    @property
    def num_classes(self) -> int:
        return int(self.roi_head.num_classes)

    def features(self, batch: DetBatch) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Pyramid levels of the batch and the padded input's ``(H, W)``."""
        x = self.preprocessor(batch.images, batch.image_sizes)
        return self.neck(self.backbone(x)), (int(x.shape[-2]), int(x.shape[-1]))

    def forward(self, images: torch.Tensor, image_sizes=None):
        """Raw RPN outputs: per level ``(objectness [B, HWA], box_deltas [B, HWA, 4])``."""
        x = self.preprocessor(images, image_sizes)
        return self.rpn_head(self.neck(self.backbone(x)))

    def loss(self, batch: DetBatch) -> dict[str, torch.Tensor]:
        """The four loss terms; needs ``batch.targets``."""
        if batch.targets is None:
            raise ValueError("TwoStageDetector.loss needs targets; this batch has none")
        feats, batch_shape = self.features(batch)
        objectness, deltas = self.rpn_head(feats)
        anchors = self.rpn_head.anchors(feats)
        proposals = self.rpn_head.proposals(objectness, deltas, anchors, batch.image_sizes)
        losses = self.rpn_head.loss(objectness, deltas, anchors, batch.targets)
        return losses | self.roi_head.loss(feats, proposals, batch.targets, batch_shape)

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[DetPrediction]:
        """Detections per image, in the pixels of the original image files."""
        feats, batch_shape = self.features(batch)
        objectness, deltas = self.rpn_head(feats)
        anchors = self.rpn_head.anchors(feats)
        proposals = self.rpn_head.proposals(objectness, deltas, anchors, batch.image_sizes)
        detections = self.roi_head.predict(feats, proposals, batch.image_sizes, batch_shape)
        targets = batch.targets or [None] * len(batch)
        return [
            to_original(boxes, scores, labels, size, target)
            for (boxes, scores, labels), size, target in zip(detections, batch.image_sizes, targets)
        ]


@MODELS.register()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017): a ``TwoStageDetector``.

    The paper's defaults live in ``RPNHead`` (anchors ``8 * stride`` at three aspect ratios,
    IoU 0.7 / 0.3, 256 samples, 2000 / 1000 proposals) and ``RoIHead`` (RoIAlign 7x7 on
    P2-P5, two 1024-wide FC layers, IoU 0.5, 512 samples, coder weights 10, 10, 5, 5). Use it
    with an ``FPN`` whose one extra level is max-pooled (P6, for the RPN only).
    """
