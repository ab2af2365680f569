"""A two-stage detector (Faster R-CNN) as a graph: proposals, RoIAlign and the box head's
post-processing inside, every step on fixed-shape tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvkit.models.deploy.base import DeployGraph, file_sizes, padded_detections
from cvkit.models.deploy.postprocess import (
    best_detections,
    clip_to_size,
    gather_rows,
    kept_by_nms,
    to_file_pixels,
    top_k_padded,
)
from cvkit.models.deploy.roi_pooling import pyramid_roi_align
from cvkit.ops import valid_boxes_mask
from cvkit.structures import DetBatch, DetTarget

# The box head's candidates that go into NMS, per image (the best by score): eager prediction
# takes every (proposal, class) pair above the score threshold, which is data-dependent; a
# graph needs a fixed number. 1000 proposals x 80 COCO classes would be 80,000 boxes in NMS.
MAX_NMS_CANDIDATES = 5000
NEG_INF = float("-inf")


class TwoStageDetectorGraph(DeployGraph):
    """``images [B, C, H, W]``, ``orig_sizes [B, 2]`` -> fixed-shape detections.

    Inputs and outputs as ``DenseDetectorGraph``'s; raw: the RPN's ``objectness [B, A]`` and
    ``rpn_deltas [B, A, 4]`` of all levels. The steps are ``TwoStageDetector.predict``'s:
    the RPN's testing proposals (per level the ``pre_nms_top_n`` best anchors, decoded,
    clipped, small boxes dropped, NMS per level, the ``post_nms_top_n`` best), RoIAlign on
    their levels, the box head, then per class: clipping, the score threshold, small boxes
    dropped, NMS, the best ``max_detections``. An image with fewer proposals than
    ``post_nms_top_n`` pads them, and the padding's detections are dropped. At most
    ``MAX_NMS_CANDIDATES`` (proposal, class) pairs per image enter the final NMS.
    """

    task = "detection"
    input_names = ("images", "orig_sizes")
    output_names = ("boxes", "scores", "labels", "num_detections")
    raw_names = ("objectness", "rpn_deltas")

    def forward(self, images: torch.Tensor, orig_sizes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        feats = m.neck(m.backbone(m.preprocessor.graph_forward(images)))
        objectness, deltas = m.rpn_head(feats)
        height, width = images.shape[-2], images.shape[-1]
        proposals, found = self._proposals(feats, objectness, deltas, height, width)
        det = self._detections(feats, proposals, found, height, width)
        boxes = to_file_pixels(det.boxes, orig_sizes, height, width)
        return (boxes, *det[1:], torch.cat(objectness, 1), torch.cat(deltas, 1))

    def _proposals(self, feats, objectness, deltas, height, width):
        """``(proposals [B, P, 4], found [B, P] bool)``, best first; ``P`` is the RPN's
        testing ``post_nms_top_n``."""
        rpn = self.model.rpn_head
        pre_n, post_n = rpn.pre_nms_top_n[1], rpn.post_nms_top_n[1]
        boxes, scores, levels = [], [], []
        for lv, (obj, dl, an) in enumerate(zip(objectness, deltas, rpn.anchors(feats))):
            values, index = top_k_padded(obj, pre_n, NEG_INF)
            decoded = rpn.box_coder.decode(
                gather_rows(dl, index).reshape(-1, 4), an.index_select(0, index.flatten())
            )
            boxes.append(decoded.view(index.shape[0], pre_n, 4))
            scores.append(values)
            levels.append(torch.full_like(index, lv))
        all_boxes = clip_to_size(torch.cat(boxes, 1), height, width)
        all_scores, all_levels = torch.cat(scores, 1), torch.cat(levels, 1)
        ok = valid_boxes_mask(all_boxes, rpn.min_size) & (all_scores > NEG_INF)
        # a dropped box must not suppress others: below every score, and masked after
        ranked = torch.where(ok, all_scores, NEG_INF)
        ok = ok & kept_by_nms(all_boxes, ranked, all_levels, rpn.nms_threshold)
        values, index = top_k_padded(torch.where(ok, all_scores, NEG_INF), post_n, NEG_INF)
        return gather_rows(all_boxes, index), values > NEG_INF

    def _detections(self, feats, proposals, found, height, width):
        roi = self.model.roi_head
        b, p = found.shape
        k = roi.num_classes
        rois = proposals.reshape(-1, 4)
        image = torch.arange(b, device=rois.device).repeat_interleave(p)
        pooled = pyramid_roi_align(
            [feats[i] for i in roi.levels],
            roi.roi_strides,
            rois,
            image,
            roi.roi_align.output_size[0],
            roi.sampling_ratio,
        )
        x = F.relu(roi.fc2(F.relu(roi.fc1(pooled.flatten(1)))))
        probs = roi.cls_score(x).softmax(dim=1)[:, :k].reshape(b, p * k)
        boxes = roi.box_coder.decode(roi.box_deltas(x), rois).view(b, p * k, 4)
        boxes = clip_to_size(boxes, height, width)
        labels = torch.arange(k, device=rois.device).repeat(p)[None].expand(b, -1)
        ok = (probs > roi.score_threshold) & valid_boxes_mask(boxes, roi.min_size)
        ok = ok & found.repeat_interleave(k, dim=1)
        top, index = top_k_padded(
            torch.where(ok, probs, -1.0), min(p * k, MAX_NMS_CANDIDATES), -1.0
        )
        boxes, labels, ok = gather_rows(boxes, index), labels.gather(1, index), top >= 0
        scores = torch.where(ok, top, -1.0)
        groups = torch.zeros_like(labels) if roi.class_agnostic_nms else labels
        ok = ok & kept_by_nms(boxes, scores, groups, roi.nms_threshold)
        return best_detections(boxes, top, labels, ok, roi.max_detections)

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
        return int(self.model.roi_head.max_detections)

    @property
    def score_threshold(self) -> float:
        return float(self.model.roi_head.score_threshold)

    def coarsest_stride(self) -> int:
        return max(self.model.rpn_head.strides)

    def eager_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        objectness, deltas = self.model(images)
        return torch.cat(objectness, 1), torch.cat(deltas, 1)
