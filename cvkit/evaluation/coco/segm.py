"""Mask IoU for ``segm`` evaluation through pycocotools' mask API, with pycocotools' rules for
turning polygons and uncompressed RLE into compressed RLE (``COCO.annToRLE``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cvkit.evaluation.coco.load import Detections, GroundTruth


def to_rle(segm: Any, height: int, width: int) -> dict:
    """A polygon list, an uncompressed RLE or a compressed RLE -> compressed RLE."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm


class MaskIou:
    """``(det_rows, gt_rows, crowd) -> IoU [D, G]`` for one (image, category) pair; RLEs are
    made once per annotation, on first use."""

    def __init__(self, gt: GroundTruth, dets: Detections) -> None:
        if dets.segm is None:
            raise ValueError("mask IoU needs the detections' segmentations (iou_type 'segm')")
        self.gt, self.dets = gt, dets
        self._det_segm: list = dets.segm
        self._gt_rle: dict[int, dict] = {}
        self._det_rle: dict[int, dict] = {}

    def __call__(self, det_rows: np.ndarray, gt_rows: np.ndarray, crowd: np.ndarray) -> np.ndarray:
        d = [self._rle(self._det_rle, self._det_segm, self.dets.image, i) for i in det_rows]
        g = [self._rle(self._gt_rle, self.gt.segm, self.gt.image, i) for i in gt_rows]
        iou = mask_utils.iou(d, g, [int(c) for c in crowd])
        return np.asarray(iou, dtype=np.float64).reshape(len(d), len(g))

    def _rle(self, cache: dict, segms: list, image: np.ndarray, row: int) -> dict:
        row = int(row)
        if row not in cache:
            height, width = self.gt.sizes[int(self.gt.image_ids[image[row]])]
            cache[row] = to_rle(segms[row], height, width)
        return cache[row]
