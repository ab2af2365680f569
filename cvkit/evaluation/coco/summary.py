"""The 12 COCO summary numbers and their text, exactly as pycocotools' ``summarize``."""

from __future__ import annotations

import numpy as np

from cvkit.evaluation.coco.match import AREA_NAMES, IOU_THRESHOLDS, MAX_DETS

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)

# (average precision?, IoU threshold or all, area range, max detections), in STAT_NAMES order
_STATS = (
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
)


def summarize(precision: np.ndarray, recall: np.ndarray) -> tuple[np.ndarray, str]:
    """``precision [T, R, K, A, M]``, ``recall [T, K, A, M]`` -> the 12 stats (``-1`` where
    nothing is defined) and pycocotools' 12 printed lines."""
    stats, lines = np.zeros(len(_STATS)), []
    for i, (is_ap, iou, area, max_det) in enumerate(_STATS):
        s = precision if is_ap else recall
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        a, m = AREA_NAMES.index(area), MAX_DETS.index(max_det)
        s = s[:, :, :, a, m] if is_ap else s[:, :, a, m]
        stats[i] = -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        iou_text = (
            f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}" if iou is None else f"{iou:0.2f}"
        )
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} | "
            f"maxDets={max_det:>3d} ] = {stats[i]:0.3f}"
        )
    return stats, "\n".join(lines)
