"""Drawing detections on images with OpenCV (boxes, class names, scores)."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def class_color(label: int) -> tuple[int, int, int]:
    """A bright RGB colour per class, spread around the hue circle."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int],
    scores: Sequence[float],
    class_names: Sequence[str],
    score_threshold: float = 0.3,
) -> np.ndarray:
    """A copy of ``image`` (``[H, W, 3]`` uint8 RGB) with each box above the threshold drawn.

    Args:
        boxes: ``[K, 4]`` xyxy in the image's pixels.
        labels, scores: one per box.
    """
    out = np.ascontiguousarray(image.copy())
    thickness = max(1, round(min(out.shape[:2]) / 250))
    for box, label, score in zip(np.asarray(boxes), labels, scores):
        if score < score_threshold:
            continue
        x1, y1, x2, y2 = np.round(box).astype(int).tolist()
        color = class_color(int(label))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        text = f"{class_names[int(label)]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - th - 4, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 4), color, -1)
        cv2.putText(
            out,
            text,
            (x1 + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out


def save_grid(images: Sequence[np.ndarray], path: str | os.PathLike, columns: int = 4) -> Path:
    """Tile RGB images (padded to the largest) into one PNG."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    cells = [np.pad(i, ((0, h - i.shape[0]), (0, w - i.shape[1]), (0, 0))) for i in images]
    cells += [np.zeros_like(cells[0])] * (-len(cells) % columns)
    rows = [np.concatenate(cells[r : r + columns], axis=1) for r in range(0, len(cells), columns)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path
