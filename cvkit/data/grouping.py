"""Batches of one shape: images grouped by aspect ratio, so a batch pads little and the
kernels prepared for one batch shape serve many batches.

A detection batch is padded to its largest height and largest width: a portrait and a
landscape image together make a square mostly of padding, and every new batch shape costs
oneDNN (CPU) or cuDNN's autotuner (GPU) a new kernel plan. ``grouped_order`` rearranges an
epoch's order so that each run of ``chunk`` samples (one batch of every process) comes from
one aspect-ratio group, as torchvision's ``GroupedBatchSampler`` and MMDetection's
``AspectRatioBatchSampler`` batch; the order stays a function of the epoch's order alone, so a
resumed run sees the same batches. The data's ``pad_multiple`` (``collate``) then rounds the
padded size up, which leaves a handful of distinct shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# width / height bin edges: tall (< 1/2), ..., square to 3:2 landscape, ..., wide (>= 2)
ASPECT_EDGES = (0.5, 2 / 3, 1.0, 1.5, 2.0)


def aspect_groups(
    sizes: Sequence[tuple[int, int]], edges: Sequence[float] = ASPECT_EDGES
) -> list[int]:
    """The aspect-ratio group of each ``(height, width)``: the bin of ``width / height``."""
    ratios = np.array([w / h for h, w in sizes], dtype=np.float64)
    return np.searchsorted(np.asarray(edges), ratios, side="right").astype(int).tolist()


def dataset_sizes(dataset: Any) -> list[tuple[int, int]]:
    """Each image's ``(height, width)``: the dataset's ``sizes`` (a COCO file's), else read
    from the headers of its ``files`` (the image check's cache has them after a first run).

    Raises:
        ValueError: the dataset has neither ``sizes`` nor ``files``.
    """
    sizes = getattr(dataset, "sizes", None)
    if sizes is not None:
        return [(int(h), int(w)) for h, w in sizes]
    files = getattr(dataset, "files", None)
    if files is None:
        raise ValueError(
            f"{type(dataset).__name__} has neither `sizes` nor `files`, so its images cannot be "
            "grouped by aspect ratio; set data.group_by_aspect=false"
        )
    from cvkit.data.doctor.image_files import inspect_images

    facts = inspect_images(list(files))
    return [(f.height or 1, f.width or 1) for f in facts]


def grouped_order(order: Sequence[int], groups: Sequence[int], chunk: int) -> list[int]:
    """``order`` rearranged so that every ``chunk`` consecutive samples share a group.

    Walks ``order`` and gives each sample to its group's open chunk; a chunk is emitted when
    full, in the order chunks fill. What is left at the end (each group's partial chunk, by
    group) follows, in mixed chunks. The result is a permutation of ``order``.
    """
    if chunk <= 1:
        return list(order)
    open_chunks: dict[int, list[int]] = {}
    out: list[int] = []
    for index in order:
        members = open_chunks.setdefault(groups[index], [])
        members.append(index)
        if len(members) == chunk:
            out += members
            open_chunks[groups[index]] = []
    for group in sorted(open_chunks):
        out += open_chunks[group]
    return out
