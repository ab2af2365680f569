"""Drawing with OpenCV: detections (boxes, class names, scores), segmentation overlays and
index-mask PNGs, image grids."""

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

    Detections are drawn from the lowest score up, boxes first and then the labels (class
    name and score on a filled box of the class's colour), so where detections overlap, the
    highest-scoring box and label are on top and no box line crosses a label.

    Args:
        boxes: ``[K, 4]`` xyxy in the image's pixels.
        labels, scores: one per box.
        class_names: name of each label.
        score_threshold: boxes scoring below it are left out.
    """
    out = np.ascontiguousarray(image.copy())
    thickness = max(1, round(min(out.shape[:2]) / 250))
    shown = [
        (np.round(box).astype(int).tolist(), int(label), float(score))
        for box, label, score in zip(np.asarray(boxes).reshape(-1, 4), labels, scores)
        if score >= score_threshold
    ]
    # a stable ascending sort: the best is drawn last, equal scores keep their given order
    shown.sort(key=lambda d: d[2])
    for (x1, y1, x2, y2), label, _ in shown:
        cv2.rectangle(out, (x1, y1), (x2, y2), class_color(label), thickness)
    for (x1, y1, _, _), label, score in shown:
        draw_label(out, f"{class_names[label]} {score:.2f}", x1, y1, class_color(label))
    return out


def draw_label(out: np.ndarray, text: str, x1: int, y1: int, color: tuple[int, int, int]) -> None:
    """``text`` in black on a filled ``color`` box just above ``(x1, y1)`` (below the image's
    top edge when there is no room above), drawn in place."""
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    top = max(y1 - th - 4, 0)
    cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 4), color, -1)
    cv2.putText(
        out, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
    )


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


# Masks and overlays ---------------------------------------------------------------------------

IGNORE_COLOUR = (224, 224, 192)  # Pascal VOC's cream for 255, the ignore index


def segmentation_palette() -> np.ndarray:
    """The fixed colours of class indices: ``ndarray[256, 3]`` uint8 RGB.

    Pascal VOC's palette (the bits of the index spread over the three channels, so index 0 is
    black, 1 dark red, 2 green, ...), the one VOC's own masks are saved with; 255, the ignore
    index, is VOC's cream. Every index mask and overlay cvkit writes uses it.
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (r, g, b)
    palette[255] = IGNORE_COLOUR
    return palette


def save_index_mask(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """Write class indices ``[H, W]`` as a PNG that reads back as the indices.

    Up to 256 values: an 8-bit palette ('P') PNG with ``segmentation_palette``, so a viewer
    shows colours while ``np.asarray(PIL.Image.open(path))`` (or OpenCV's
    ``IMREAD_UNCHANGED``) gives the indices, as with Pascal VOC's masks. More classes: a
    16-bit grayscale PNG.
    """
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"a mask is [H, W] integer class indices, got {mask.dtype} {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 65535):
        raise ValueError(f"mask values {mask.min()}..{mask.max()} do not fit a PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask.size == 0 or mask.max() <= 255:
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette(segmentation_palette().reshape(-1).tolist())
        image.save(path)
    elif not cv2.imwrite(str(path), mask.astype(np.uint16)):
        raise OSError(f"could not write '{path}'")
    return path


def draw_segmentation(
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    alpha: float = 0.5,
    background: int | None = 0,
    legend: bool = True,
    outline: bool = True,
) -> np.ndarray:
    """A copy of ``image`` blended with the colour of each pixel's class, and a legend.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        mask: ``[H, W]`` class indices of the same size (255: ignored, drawn cream).
        class_names: name of each class index, for the legend.
        alpha: weight of the class colour (0: the image, 1: the colours only).
        background: a class left transparent (``None``: every class is coloured).
        legend: a small legend, top left, naming the classes present.
        outline: a white line where the class changes, so regions stand out on any photo.

    Colours are those of ``segmentation_palette``, as in the index PNGs.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8 RGB, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    palette = segmentation_palette()
    index = np.clip(mask, 0, 255).astype(np.intp)
    coloured = mask != background if background is not None else np.ones(mask.shape, bool)
    out = image.copy()
    blend = (1 - alpha) * image[coloured] + alpha * palette[index[coloured]].astype(np.float32)
    out[coloured] = np.clip(np.round(blend), 0, 255).astype(np.uint8)
    if outline:
        edge = np.zeros(mask.shape, bool)
        edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
        edge[1:, :] |= mask[1:, :] != mask[:-1, :]
        out[edge] = 255
    if legend:
        present = [int(v) for v in np.unique(mask) if background is None or v != background]
        names = [
            (v, "ignore" if v == 255 and v >= len(class_names) else _class_name(class_names, v))
            for v in present
        ]
        out = _draw_legend(out, names, palette)
    return np.ascontiguousarray(out)


def _class_name(class_names: Sequence[str], value: int) -> str:
    return str(class_names[value]) if 0 <= value < len(class_names) else str(value)


def _draw_legend(
    image: np.ndarray, entries: Sequence[tuple[int, str]], palette: np.ndarray
) -> np.ndarray:
    """A swatch and a name per entry, stacked in the top-left corner on a dark panel."""
    if not entries:
        return image
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    (_, th), _ = cv2.getTextSize("Ag", font, scale, 1)
    row, swatch = th + 6, th + 2
    shown = entries[: max(1, (image.shape[0] - 4) // row)]
    width = max(cv2.getTextSize(n, font, scale, 1)[0][0] for _, n in shown) + swatch + 10
    height = row * len(shown) + 4
    out = np.ascontiguousarray(image)
    panel = out[:height, :width]
    panel[:] = (panel.astype(np.float32) * 0.35).astype(np.uint8)
    for i, (value, name) in enumerate(shown):
        y = 3 + i * row
        colour = tuple(int(c) for c in palette[min(value, 255)])
        cv2.rectangle(out, (3, y), (3 + swatch, y + swatch), colour, -1)
        cv2.rectangle(out, (3, y), (3 + swatch, y + swatch), (255, 255, 255), 1)
        cv2.putText(
            out, name, (swatch + 7, y + th + 1), font, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with ``text`` in white on a dark strip, bottom left."""
    out = np.ascontiguousarray(image.copy())
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
    top = max(out.shape[0] - th - 6, 0)
    strip = out[top:, : tw + 6]
    strip[:] = (strip.astype(np.float32) * 0.35).astype(np.uint8)
    cv2.putText(out, text, (3, out.shape[0] - 4), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
