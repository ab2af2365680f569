"""Dataset samples drawn with their ground truth, as a dataset returns them (after its
augmentations): the look that tells whether a pipeline kept boxes and masks on their objects.

Items are what cvkit's datasets return: ``(image, label)`` for classification, a dict with
``image``, ``boxes`` and ``labels`` (and ``iscrowd``) for detection, a dict with ``image`` and
``mask`` for segmentation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvkit.visualize.draw import (
    caption,
    class_color,
    draw_label,
    draw_segmentation,
    save_grid,
)

# Smaller images are enlarged (nearest neighbour) to this shorter side, so labels stay legible
MIN_SIDE = 96


def draw_sample(item: Any, classes: Sequence[str], title: str = "") -> np.ndarray:
    """One dataset item with its ground truth drawn: ``ndarray[H, W, 3]`` uint8 RGB.

    Detection: each box in its class's colour with the class name (``(crowd)`` after a crowd
    box's); the caption counts the boxes and any that reach outside the image. Segmentation:
    the mask overlaid (a class named ``background`` left clear, 255 cream) with a legend; a
    mask whose size differs from the image's is said in the caption instead. Classification:
    the class name as the caption. Images smaller than :data:`MIN_SIDE` are enlarged.

    Args:
        item: a dataset item (see the module docstring).
        classes: the name of each label.
        title: text put first in the caption (such as the sample's index).

    Raises:
        TypeError: ``item`` is none of the three kinds.
    """
    if isinstance(item, (tuple, list)) and len(item) == 2:
        image = _display(item[0])[0]
        label = int(item[1])
        name = _name(classes, label)
        return caption(image, _join(title, name if name == str(label) else f"{name} ({label})"))
    if isinstance(item, dict) and "boxes" in item:
        return _detection(item, classes, title)
    if isinstance(item, dict) and "mask" in item:
        return _segmentation(item, classes, title)
    raise TypeError(
        f"cannot draw a dataset item of type {type(item).__name__}"
        + (f" with keys {sorted(item)}" if isinstance(item, dict) else "")
        + "; expected (image, label), or a dict with 'image' and 'boxes' or 'mask'"
    )


def save_sample_grids(
    items: Sequence[Any],
    classes: Sequence[str],
    out_dir: str | os.PathLike,
    stem: str,
    titles: Sequence[str] | None = None,
    per_grid: int = 16,
    columns: int = 4,
) -> list[Path]:
    """Draw every item (:func:`draw_sample`) and tile them into PNG grids in ``out_dir``.

    Args:
        items: dataset items.
        classes: the name of each label.
        out_dir: the folder (made if missing).
        stem: file name: ``<stem>.png``, or ``<stem>_1.png``, ``<stem>_2.png``... when the
            items need more than one grid.
        titles: a caption prefix per item (default ``#0``, ``#1``...).
        per_grid: items per PNG.
        columns: items per row of a grid.

    Returns:
        The PNG paths written.
    """
    if not items:
        raise ValueError("no items to draw")
    titles = list(titles) if titles is not None else [f"#{i}" for i in range(len(items))]
    drawn = [draw_sample(item, classes, title) for item, title in zip(items, titles)]
    grids = [drawn[i : i + per_grid] for i in range(0, len(drawn), per_grid)]
    names = (
        [f"{stem}.png"]
        if len(grids) == 1
        else [f"{stem}_{k}.png" for k in range(1, len(grids) + 1)]
    )
    return [
        save_grid(grid, Path(out_dir) / name, columns=min(columns, len(grid)))
        for grid, name in zip(grids, names)
    ]


def _detection(item: dict, classes: Sequence[str], title: str) -> np.ndarray:
    image, scale = _display(item["image"])
    h, w = image.shape[:2]
    boxes = np.asarray(item["boxes"], dtype=np.float32).reshape(-1, 4) * scale
    labels = [int(v) for v in np.asarray(item.get("labels", [0] * len(boxes))).reshape(-1)]
    crowd = np.asarray(item.get("iscrowd", np.zeros(len(boxes), bool)), dtype=bool).reshape(-1)
    thickness = max(1, round(min(h, w) / 250))
    rounded = np.round(boxes).astype(int).tolist()
    for (x1, y1, x2, y2), label in zip(rounded, labels):
        cv2.rectangle(image, (x1, y1), (x2, y2), class_color(label), thickness)
    for (x1, y1, _, _), label, is_crowd in zip(rounded, labels, crowd):
        text = _name(classes, label) + (" (crowd)" if is_crowd else "")
        draw_label(image, text, x1, y1, class_color(label))
    tolerance = 0.5 * scale  # half a pixel of the sample's own image
    outside = int(
        np.sum(
            (boxes[:, 0] < -tolerance)
            | (boxes[:, 1] < -tolerance)
            | (boxes[:, 2] > w + tolerance)
            | (boxes[:, 3] > h + tolerance)
        )
    )
    text = f"{len(boxes)} boxes" + (f", {outside} outside the image" if outside else "")
    return caption(image, _join(title, text))


def _segmentation(item: dict, classes: Sequence[str], title: str) -> np.ndarray:
    image, scale = _display(item["image"])
    mask = np.asarray(item["mask"])
    if mask.shape[:2] != tuple(s // scale for s in image.shape[:2]):
        got = f"{mask.shape[1]}x{mask.shape[0]}" if mask.ndim >= 2 else str(mask.shape)
        want = f"{image.shape[1] // scale}x{image.shape[0] // scale}"
        return caption(image, _join(title, f"mask {got} differs from image {want}"))
    if scale > 1:
        mask = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
    lower = [str(c).lower() for c in classes]
    background = lower.index("background") if "background" in lower else None
    drawn = draw_segmentation(image, mask.astype(np.int64), classes, background=background)
    return caption(drawn, title) if title else drawn


def _display(image: Any) -> tuple[np.ndarray, int]:
    """An RGB uint8 ``[H, W, 3]`` copy for drawing, and the whole factor it was enlarged by.

    Accepts what transforms may leave: grayscale, channels first, floats (0..1, 0..255, or
    normalised, which is stretched to 0..255).
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.transpose(1, 2, 0)  # CHW, as ToTensorV2 leaves it
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if lo >= 0 and hi <= 1:
            array = array * 255
        elif lo < 0 or hi > 255:
            array = (array - lo) * (255 / max(hi - lo, 1e-6))
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    scale = math.ceil(MIN_SIDE / min(array.shape[:2])) if min(array.shape[:2]) < MIN_SIDE else 1
    if scale > 1:
        array = np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)
    return np.ascontiguousarray(array[:, :, :3]).copy(), scale


def _name(classes: Sequence[str], label: int) -> str:
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def _join(title: str, text: str) -> str:
    return f"{title}: {text}" if title else text
