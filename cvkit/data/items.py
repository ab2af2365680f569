"""What every task's dataset items share: where the image is, and a sample spread over a
dataset (for tools that look at a few items: ``cvkit analyze``, ``batch_size: auto``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def item_image(item: Any) -> np.ndarray:
    """The ``[H, W, 3]`` uint8 image of a dataset item: a dict's ``"image"`` (detection,
    segmentation) or the first of an ``(image, label)`` pair (classification)."""
    return item["image"] if isinstance(item, dict) else item[0]


def spread_items(dataset: Any, count: int) -> list[Any]:
    """Up to ``count`` items of ``dataset``, evenly spread over it, in its order."""
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round())
    return [dataset[int(i)] for i in picks]
