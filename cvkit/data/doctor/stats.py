"""What a dataset holds: images, instances per class, COCO's small / medium / large counts,
and histograms of box sizes and aspect ratios."""

from __future__ import annotations

from typing import Any

import numpy as np

# COCO's size ranges, in pixels of area (the evaluation's areaRng)
SMALL, MEDIUM = 32**2, 96**2
# bins of the histograms: box sides (pixels) and aspect ratio (width / height), log-spaced
SIDE_BINS = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 1e9]
ASPECT_BINS = [0, 1 / 8, 1 / 4, 1 / 2, 1 / 1.5, 1.5, 2, 4, 8, 1e9]


def box_stats(
    annotations: list[dict[str, Any]], categories: dict[int, str], image_count: int
) -> dict[str, Any]:
    """Statistics of a COCO file's sound annotations (``CocoContents``).

    ``area`` is the annotation's ``area`` where it has one (what COCOeval ranks by), else the
    box's; crowd regions are counted apart and left out of the size figures.
    """
    crowd = [a for a in annotations if a.get("iscrowd", 0)]
    plain = [a for a in annotations if not a.get("iscrowd", 0)]
    boxes = np.array([a["bbox"] for a in plain], dtype=np.float64).reshape(-1, 4)
    widths, heights = boxes[:, 2], boxes[:, 3]
    areas = np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in plain], dtype=float)
    per_class = {name: 0 for name in categories.values()}
    images_of: dict[str, set] = {name: set() for name in categories.values()}
    for a in plain:
        name = categories[a["category_id"]]
        per_class[name] += 1
        images_of[name].add(a["image_id"])
    annotated = {a["image_id"] for a in annotations}
    positive = (widths > 0) & (heights > 0)
    return {
        "images": image_count,
        "images_without_annotations": image_count - len(annotated),
        "instances": len(plain),
        "crowd_regions": len(crowd),
        "instances_per_class": per_class,
        "images_per_class": {name: len(ids) for name, ids in images_of.items()},
        "sizes": {
            "small": int((areas < SMALL).sum()),
            "medium": int(((areas >= SMALL) & (areas < MEDIUM)).sum()),
            "large": int((areas >= MEDIUM).sum()),
        },
        "box_width": histogram(widths[positive], SIDE_BINS),
        "box_height": histogram(heights[positive], SIDE_BINS),
        "aspect_ratio": histogram(widths[positive] / heights[positive], ASPECT_BINS),
    }


def histogram(values: np.ndarray, bins: list[float]) -> dict[str, list]:
    """``{"edges": [...], "counts": [...]}``; the last edge stands for infinity."""
    counts, _ = np.histogram(values, bins=bins)
    return {"edges": [float(b) for b in bins], "counts": counts.astype(int).tolist()}


def label_stats(labels: list[int], classes: list[str]) -> dict[str, Any]:
    """Statistics of a classification dataset: images, and images per class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {
        "images": len(labels),
        "images_per_class": {name: int(c) for name, c in zip(classes, counts)},
    }


def pixel_stats(pixels: np.ndarray, images_with: np.ndarray, classes: list[str]) -> dict:
    """Statistics of a segmentation dataset: pixels and images per class, ignored pixels.

    Args:
        pixels: ``int64 [K + 1]`` pixels of each class, then ignored pixels.
        images_with: ``int64 [K]`` images in which each class appears.
    """
    return {
        "pixels_per_class": {name: int(p) for name, p in zip(classes, pixels[:-1])},
        "ignored_pixels": int(pixels[-1]),
        "images_per_class": {name: int(n) for name, n in zip(classes, images_with)},
    }
