"""Mask IoU for ``segm`` evaluation through pycocotools' mask API, with pycocotools' rules for
turning polygons and uncompressed RLE into compressed RLE (``COCO.annToRLE``).

pycocotools computes the IoUs of one (image, category) pair per call; most of the time of a
call is its fixed cost (converting arguments, decoding every mask's RLE string), not the
IoUs. Here one call takes every detection and gt of an image that need an IoU: the few
cross-category pairs it also computes cost little, as pycocotools skips the pairs whose
boxes do not overlap, and every value is the one pycocotools computes for that pair.
"""

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
    """``(det_rows [D], gt_rows [D, G], valid [D, G]) -> IoU [D, G]``: each detection's mask
    IoU with gts of its image (``0`` where not ``valid``); RLEs are made once per annotation,
    on first use."""

    def __init__(self, gt: GroundTruth, dets: Detections) -> None:
        if dets.segm is None:
            raise ValueError("mask IoU needs the detections' segmentations (iou_type 'segm')")
        self.gt, self.dets = gt, dets
        self._det_segm: list = dets.segm
        # results from a detector are compressed RLE already: used as they are, no lookups
        self._det_ready = all(map(_compressed, dets.segm))
        self._gt_rle: dict[int, dict] = {}
        self._det_rle: dict[int, dict] = {}
        self._crowd = gt.crowd.astype(np.uint8).tolist()

    def __call__(self, det_rows: np.ndarray, gt_rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = np.zeros(gt_rows.shape)
        r, s = np.nonzero(valid)
        if len(r) == 0:
            return out
        image = self.dets.image[det_rows[r]]
        # each image's detections and gts, once each, sorted by image, then row
        det_key, gt_key = _key(image, det_rows[r]), _key(image, gt_rows[r, s])
        dets, gts = np.unique(det_key), np.unique(gt_key)
        images = dets >> 32  # every image here has both
        images = images[np.r_[True, images[1:] != images[:-1]]]
        d_start, d_end = _spans(dets >> 32, images)
        g_start, g_end = _spans(gts >> 32, images)
        n_g = g_end - g_start
        # where each IoU lands in the per-image [n_d, n_g] matrices laid end to end
        offset = np.cumsum((d_end - d_start) * n_g) - (d_end - d_start) * n_g
        which = np.searchsorted(images, image)
        det_local = np.searchsorted(dets, det_key) - d_start[which]
        gt_local = np.searchsorted(gts, gt_key) - g_start[which]
        values = self._per_image(dets & _ROW, gts & _ROW, d_end, g_end)
        out[r, s] = values[offset[which] + det_local * n_g[which] + gt_local]
        return out

    def _per_image(self, d_row, g_row, d_end, g_end) -> np.ndarray:
        """One ``mask_utils.iou`` per image (its detections ``d_row[.. d_end]``, its gts
        ``g_row[.. g_end]``), the ``[n_d, n_g]`` matrices raveled end to end."""
        chunks = []
        d_rows, g_rows = d_row.tolist(), g_row.tolist()
        d0 = g0 = 0
        det = self._det_segm.__getitem__ if self._det_ready else self._det
        for d1, g1 in zip(d_end.tolist(), g_end.tolist()):
            dts = [det(i) for i in d_rows[d0:d1]]
            gts = [self._gt(j) for j in g_rows[g0:g1]]
            crowd = [self._crowd[j] for j in g_rows[g0:g1]]
            chunks.append(np.asarray(mask_utils.iou(dts, gts, crowd), np.float64).ravel())
            d0, g0 = d1, g1
        return np.concatenate(chunks)

    def _det(self, row: int) -> dict:
        if row not in self._det_rle:
            height, width = self.gt.sizes[int(self.gt.image_ids[self.dets.image[row]])]
            self._det_rle[row] = to_rle(self._det_segm[row], height, width)
        return self._det_rle[row]

    def _gt(self, row: int) -> dict:
        if row not in self._gt_rle:
            height, width = self.gt.sizes[int(self.gt.image_ids[self.gt.image[row]])]
            self._gt_rle[row] = to_rle(self.gt.segm[row], height, width)
        return self._gt_rle[row]


_ROW = 0xFFFFFFFF


def _compressed(segm: Any) -> bool:
    """A compressed RLE: what ``to_rle`` returns unchanged."""
    return isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes))


def _key(image: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One sortable int64 per (image, row): image major (both are below 2^31)."""
    return image.astype(np.int64) << 32 | row.astype(np.int64)


def _spans(sorted_keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each ``wanted`` value's run in ``sorted_keys``."""
    return (
        np.searchsorted(sorted_keys, wanted, side="left"),
        np.searchsorted(sorted_keys, wanted, side="right"),
    )
