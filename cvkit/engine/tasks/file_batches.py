"""Image files in batches for prediction, decoded beside the model.

``file_batches`` reads the files (and runs the ``data.val`` pipeline) in a DataLoader worker
while the model computes, and groups the images into batches of images that the network sees
at the same padded size (``network_size``). Padding a batch to its largest image would
change what a detector finds near an image's border, so an image is batched only with
images that pad to its own size: each prediction is then what the image gives alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from cvkit.data.image_io import read_image
from cvkit.engine.tasks.base import PredictRequest

LOOKAHEAD = 4  # images held back while grouping, in batches: the memory bound of the buffer


@dataclass
class FileImage:
    """One decoded file.

    Attributes:
        index: the file's position in the list given (records go back in this order).
        path: the file.
        image: ``ndarray[H, W, 3]`` uint8 RGB after the pipeline: what the model gets.
        orig: the decoded file before the pipeline when asked for (drawing), else ``None``.
        orig_size: the file's ``(height, width)``.
    """

    index: int
    path: str
    image: np.ndarray
    orig: np.ndarray | None
    orig_size: tuple[int, int]


def request_batches(
    model: Any,
    paths: Sequence[str],
    pipeline: Any,
    request: PredictRequest,
    *,
    exact: bool = False,
    keep_orig: bool = False,
) -> Iterator[list[FileImage]]:
    """``file_batches`` for ``model`` as ``request`` asks: its batch size and workers,
    grouped by ``network_size``."""
    return file_batches(
        paths,
        pipeline,
        lambda h, w: network_size(model, h, w, exact),
        batch_limit(model, request.batch_size),
        workers=request.workers,
        keep_orig=keep_orig,
    )


def network_size(model: Any, h: int, w: int, exact: bool = False) -> Hashable:
    """The size at which ``model`` sees an ``h x w`` input alone: what batched images share.

    The model's ``preprocessor`` pads to ``size_divisor`` (or ``pad_to``); then images whose
    padded size is the same give, batched, what each gives alone. A resizing preprocessor
    (``input_size``) resizes the padded batch, and a model without a preprocessor (an
    exported graph) is not known, so they, and ``exact`` (a classifier, whose batch is a
    stack of equal images), batch only images of the very same size.
    """
    pre = getattr(model, "preprocessor", None)
    if exact or pre is None or getattr(pre, "input_size", None) is not None:
        return ("exact", h, w)
    pad_h, pad_w = pre._padding(h, w)
    return ("padded", h + pad_h, w + pad_w)


def batch_limit(model: Any, batch_size: int) -> int:
    """``batch_size``, or 1 for an exported graph that takes one image a run."""
    metadata = getattr(model, "metadata", None)
    if isinstance(metadata, dict) and metadata.get("batch") == "static":
        return 1
    return max(1, int(batch_size))


def default_workers(num_files: int) -> int:
    """1 worker when there are several files and more than one core, else 0 (decode inline)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 1 if num_files > 1 and cores > 1 else 0


def file_batches(
    paths: Sequence[str],
    pipeline: Any,
    size_key: Callable[[int, int], Hashable],
    batch_size: int,
    *,
    workers: int | None = None,
    keep_orig: bool = False,
) -> Iterator[list[FileImage]]:
    """Batches of decoded files, each of images with one ``size_key(h, w)``.

    Args:
        paths: the image files.
        pipeline: the transforms (albumentations-style, ``pipeline(image=...)["image"]``)
            or ``None``.
        size_key: ``(h, w)`` of a transformed image -> its group (see ``network_size``).
        batch_size: images per batch at most.
        workers: DataLoader workers; ``None``: ``default_workers(len(paths))``.
        keep_orig: keep each decoded file (``FileImage.orig``), as drawing needs.

    Yields:
        lists of ``FileImage``, each in file order. A group is given when full; the buffer
        holds at most ``LOOKAHEAD`` batches of images, then gives the group that waited
        longest; the rest come at the end. Callers put records back in order by ``index``.

    Raises:
        what ``read_image`` or the pipeline raise for a file, unchanged.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    workers = default_workers(len(paths)) if workers is None else workers
    loader = DataLoader(
        _Files(list(map(str, paths)), pipeline, keep_orig),
        batch_size=None,  # one file an item; grouping happens here
        num_workers=workers,
        collate_fn=_as_is,
        # enough ahead that the worker decodes the next batch while the model runs
        prefetch_factor=2 * batch_size if workers else None,
    )
    groups: dict[Hashable, list[FileImage]] = {}
    held = 0
    for item in loader:
        if isinstance(item, BaseException):
            raise item
        key = size_key(*item.image.shape[:2])
        group = groups.setdefault(key, [])
        group.append(item)
        held += 1
        if len(group) >= batch_size:
            held -= len(group)
            yield groups.pop(key)
        elif held > LOOKAHEAD * batch_size:
            oldest = min(groups, key=lambda k: groups[k][0].index)
            held -= len(groups[oldest])
            yield groups.pop(oldest)
    for key in sorted(groups, key=lambda k: groups[k][0].index):
        yield groups[key]


class _Files(Dataset):
    """File ``i`` decoded and transformed; an error comes back as the item, so the caller
    raises it as ``read_image`` wrote it (not wrapped by the worker)."""

    def __init__(self, paths: list[str], pipeline: Any, keep_orig: bool) -> None:
        self.paths, self.pipeline, self.keep_orig = paths, pipeline, keep_orig

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> FileImage | BaseException:
        path = self.paths[i]
        try:
            image = read_image(path)
            x = self.pipeline(image=image)["image"] if self.pipeline else image
        except Exception as error:  # raised again in the main process
            return error
        h, w = image.shape[:2]
        return FileImage(i, path, x, image if self.keep_orig else None, (int(h), int(w)))


def _as_is(item: Any) -> Any:
    return item
