"""A one-stage detector (RetinaNet) as a graph, its post-processing inside."""

from __future__ import annotations

import torch

from cvkit.models.deploy.base import DeployGraph, file_sizes, padded_detections
from cvkit.models.deploy.postprocess import (
    best_detections,
    clip_to_size,
    gather_rows,
    kept_by_nms,
    to_file_pixels,
    top_k_padded,
)
from cvkit.structures import DetBatch, DetTarget


class DenseDetectorGraph(DeployGraph):
    """``images [B, C, H, W]``, ``orig_sizes [B, 2]`` -> fixed-shape detections.

    ``orig_sizes`` holds each image file's ``(h, w)``: the boxes come back in its pixels (the
    input's own size when the images were not resized). Outputs: ``boxes [B, M, 4]``,
    ``scores [B, M]``, ``labels [B, M]``, ``num_detections [B]`` with ``M`` the model's
    ``max_detections`` (see ``postprocess.Detections``); raw: ``cls_logits [B, A, K]`` and
    ``box_deltas [B, A, 4]`` of all levels. The steps are ``OneStageDetector.predict``'s:
    per level the ``topk_candidates`` best scores, decoded and clipped; the score threshold;
    NMS per class (or across classes); the best ``max_detections``.
    """

    task = "detection"
    input_names = ("images", "orig_sizes")
    output_names = ("boxes", "scores", "labels", "num_detections")
    raw_names = ("cls_logits", "box_deltas")

    def forward(self, images: torch.Tensor, orig_sizes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        feats = m.neck(m.backbone(m.preprocessor.graph_forward(images)))
        logits, deltas = m.head(feats)
        anchors = m._level_anchors([tuple(f.shape[-2:]) for f in feats], deltas[0])
        height, width = images.shape[-2], images.shape[-1]
        boxes, scores, labels = self._candidates(logits, deltas, anchors)
        boxes = clip_to_size(boxes, height, width)
        groups = torch.zeros_like(labels) if m.class_agnostic_nms else labels
        valid = kept_by_nms(boxes, scores, groups, m.nms_threshold) & (scores > m.score_threshold)
        det = best_detections(boxes, scores, labels, valid, m.max_detections)
        boxes = to_file_pixels(det.boxes, orig_sizes, height, width)
        return (boxes, *det[1:], torch.cat(logits, 1), torch.cat(deltas, 1))

    def _candidates(self, logits, deltas, anchors):
        """Per level the best ``topk_candidates`` (anchor, class) scores, decoded: ``boxes
        [B, N, 4]``, ``scores [B, N]``, ``labels [B, N]`` with ``N = levels * k``."""
        m = self.model
        k, num_classes = m.topk_candidates, m.num_classes
        boxes, scores, labels = [], [], []
        for lg, dl, an in zip(logits, deltas, anchors):
            values, index = top_k_padded(lg.sigmoid().flatten(1), k, -1.0)
            anchor = index // num_classes
            picked = gather_rows(dl, anchor).reshape(-1, 4)
            decoded = m.box_coder.decode(picked, an.index_select(0, anchor.flatten()))
            boxes.append(decoded.view(anchor.shape[0], k, 4))
            scores.append(values)
            labels.append(index % num_classes)
        return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(labels, 1)

    def inputs_for(
        self, images: torch.Tensor, file_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, ...]:
        return images, file_sizes(images, file_size)

    def eager_outputs(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images, orig_sizes = inputs
        size = (int(images.shape[-2]), int(images.shape[-1]))
        targets = [DetTarget.empty(i, tuple(s)) for i, s in enumerate(orig_sizes.tolist())]
        predictions = self.model.predict(DetBatch(images, [size] * len(images), targets))
        return padded_detections(predictions, self.max_detections)

    @property
    def max_detections(self) -> int:
        return int(self.model.max_detections)

    @property
    def score_threshold(self) -> float:
        return float(self.model.score_threshold)

    def coarsest_stride(self) -> int:
        return max(self.model.strides)

    def eager_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (logits, deltas), _ = self.model(images)
        return torch.cat(logits, 1), torch.cat(deltas, 1)
