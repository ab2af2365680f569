"""COCO ground truth and results files -> flat NumPy arrays, with pycocotools' selection rules.

Only annotations whose image is in ``images`` and whose category is in ``categories`` count
(pycocotools' ``getAnnIds(imgIds, catIds)``); image and category ids are sorted; within an
(image, category) pair annotations keep their file order, which decides ties.

Files are read, and every problem worded, by :mod:`cvkit.coco_file`, the reader the training
datasets use too. Here whole columns are converted at once, after a check of the set of their
value types (a string score, a boolean or fractional id would convert silently); only when a
check or conversion fails does a Python loop look for the entry to name.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.coco_file import (
    CocoFormatError,
    check_results_list,
    check_sections,
    entry_name,
    field_error,
    gc_paused,
    read_json,
    subject,
    unknown_reference,
)

# One error for every COCO file problem: the name evaluate_coco has always raised.
CocoEvalInputError = CocoFormatError

__all__ = [
    "CocoEvalInputError",
    "Detections",
    "GroundTruth",
    "check_result_fields",
    "check_result_images",
    "gc_paused",
    "load_ground_truth",
    "load_results",
    "read_json",
]


@dataclass
class GroundTruth:
    """Ground-truth annotations as arrays, ``N`` rows in pycocotools' order.

    Attributes:
        image_ids: ``[I]`` sorted image ids; ``cat_ids``: ``[K]`` sorted category ids.
        cat_names: ``K`` category names.
        image: ``[N]`` index into ``image_ids``; ``cat``: ``[N]`` index into ``cat_ids``.
        ann_id: ``[N]`` annotation ids (an id of 0 never counts as a match, as in pycocotools).
        box: ``[N, 4]`` float64 xywh; area: ``[N]`` float64 (the file's ``area``).
        crowd: ``[N]`` bool.
        segm: the ``N`` segmentations (polygons or RLE), for ``segm`` evaluation.
        sizes: ``{image_id: (height, width)}``, to turn polygons into masks.
        source: the file name, for messages.
    """

    image_ids: np.ndarray
    cat_ids: np.ndarray
    cat_names: list[str]
    image: np.ndarray
    cat: np.ndarray
    ann_id: np.ndarray
    box: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    segm: list[Any]
    sizes: dict[int, tuple[int, int]]
    source: str


@dataclass
class Detections:
    """Results as arrays, ``D`` rows in file order.

    Attributes:
        image: ``[D]`` index into the ground truth's ``image_ids``; ``cat``: ``[D]`` index
            into its ``cat_ids``.
        box: ``[D, 4]`` float64 xywh; score: ``[D]`` float64; area: ``[D]`` float64
            (``w * h``, or the mask's area for results without boxes, as pycocotools).
        segm: the ``D`` segmentations (RLE) for ``segm`` evaluation, else ``None``.
    """

    image: np.ndarray
    cat: np.ndarray
    box: np.ndarray
    score: np.ndarray
    area: np.ndarray
    segm: list[Any] | None


def load_ground_truth(data: dict | str | Path, source: str = "<ground truth>") -> GroundTruth:
    """A COCO instances dict (or file) -> ``GroundTruth``.

    Args:
        data: the parsed file, or its path (read with :func:`cvkit.coco_file.read_json`).
        source: how messages name ``data`` when it is not a path.

    Raises:
        CocoEvalInputError: the file cannot be read, lacks a section, or an entry that is used
            has a field that cannot be converted; worded as by every COCO reader
            (:mod:`cvkit.coco_file`).
    """
    if not isinstance(data, dict):
        source, data = str(data), read_json(data)
    data = check_sections(data, source)
    images = _image_sizes(data["images"], source)
    cats = _categories(data["categories"], source)
    image_ids = np.array(sorted(images), dtype=np.int64)
    cat_ids = np.array([c for c, _ in cats], dtype=np.int64)
    anns = data["annotations"]
    every = _Where(anns, "annotations", source)
    ann_image = _column(anns, "image_id", np.int64, every)
    ann_cat = _column(anns, "category_id", np.int64, every)
    keep = np.isin(ann_image, image_ids) & np.isin(ann_cat, cat_ids)
    kept = [a for a, k in zip(anns, keep.tolist()) if k]
    used = _Where(anns, "annotations", source, keep)  # messages name the file's places
    box = _boxes(kept, used)
    area = _column(kept, "area", np.float64, used)
    try:  # pycocotools needs no id; a missing one counts as 0 (never a match)
        ann_id = np.array([int(a.get("id", 0)) for a in kept], dtype=np.int64)
    except _CONVERSION_ERRORS:
        raise _Where(anns, "annotations", source, keep, ("id",)).error(("id",)) from None
    # pycocotools' order: by image id, then file order; stable, so file order decides ties
    order = np.argsort(ann_image[keep], kind="stable")
    return GroundTruth(
        image_ids=image_ids,
        cat_ids=cat_ids,
        cat_names=[n for _, n in cats],
        image=np.searchsorted(image_ids, ann_image[keep])[order],
        cat=np.searchsorted(cat_ids, ann_cat[keep])[order],
        ann_id=ann_id[order],
        box=box[order],
        area=area[order],
        crowd=np.array([bool(a.get("iscrowd", 0)) for a in kept], dtype=bool)[order],
        segm=[kept[i].get("segmentation") for i in order.tolist()],
        sizes=images,
        source=source,
    )


def load_results(
    results: list | str | Path, gt: GroundTruth, iou_type: str = "bbox", source: str = "<results>"
) -> Detections:
    """A COCO results list (or file) -> ``Detections`` matched to ``gt``'s ids.

    Results naming a category the ground truth lacks are not scored (as in pycocotools), with
    a warning; a results file holding an empty list (every AP is 0) gets one too.

    Raises:
        CocoEvalInputError: not a list, a missing field or one of the wrong type (a string or
            boolean, a fractional id, a NaN or infinite score or box), or an image id the
            ground truth lacks.
    """
    if not isinstance(results, list):
        source, results = str(results), read_json(results)
    results = check_results_list(results, source)
    # A file without detections is most often the wrong file, or a model's silent failure; a
    # list in memory (a label such as <results>, see subject()) is a caller's own, as when
    # an untrained detector is validated, so it is not warned about.
    if not results and not source.startswith("<"):
        warnings.warn(
            f"{subject(source)} holds no detections (an empty list), so every AP is 0; check "
            "that the model detected anything (is its score threshold too high?) and that "
            "this is the file its evaluation wrote",
            stacklevel=2,
        )
    where = _Where(results, "results", source)
    image_id = check_result_images(results, gt.image_ids, source, gt.source)
    cat_id = _column(results, "category_id", np.int64, where)
    score = _column(results, "score", np.float64, where)
    known_cat = np.isin(cat_id, gt.cat_ids)
    if not known_cat.all():
        first = int(np.flatnonzero(~known_cat)[0])
        name = entry_name("results", first, results[first])
        known = gt.cat_ids.tolist()
        what = unknown_reference(name, "category_id", int(cat_id[first]), known, gt.source)
        warnings.warn(
            f"{subject(source)}: {what}; {int((~known_cat).sum())} of {len(results)} results "
            "name categories it lacks and are not scored, as in pycocotools",
            stacklevel=2,
        )
    segm: list[Any] | None = None
    has_boxes = _has_boxes(results)
    if iou_type == "segm" or not has_boxes:
        segm = [r.get("segmentation") for r in results]
        if any(s is None for s in segm):
            raise where.error(("segmentation",))
    if has_boxes:
        box = _boxes(results, where)
        area = box[:, 2] * box[:, 3]
    else:  # segm was read above: without boxes, results are masks
        from pycocotools import mask as mask_utils

        masks = segm or []
        area = np.array([float(mask_utils.area(s)) for s in masks], dtype=np.float64)
        box = np.array([mask_utils.toBbox(s) for s in masks], dtype=np.float64).reshape(-1, 4)
    keep = known_cat
    return Detections(
        image=np.searchsorted(gt.image_ids, image_id[keep]),
        cat=np.searchsorted(gt.cat_ids, cat_id[keep]),
        box=box[keep],
        score=score[keep],
        area=area[keep],
        segm=None if segm is None else [s for s, k in zip(segm, keep.tolist()) if k],
    )


def check_result_images(
    results: list, image_ids: np.ndarray, source: str, gt_source: str
) -> np.ndarray:
    """Every result's ``image_id`` as ``int64 [D]``, each checked to be one of ``image_ids``.

    Results for images the ground truth lacks mean the two files do not belong together, so
    they are an error (pycocotools fails on them too, with an ``AssertionError``).

    Args:
        results: the results list.
        image_ids: ``[I]`` the ground truth's image ids.
        source, gt_source: the two files (or labels), for the message.

    Raises:
        CocoEvalInputError: a result without an integer ``image_id``, or naming an image the
            ground truth lacks (the first such result, and how many there are).
    """
    image_id = _column(results, "image_id", np.int64, _Where(results, "results", source))
    missing = ~np.isin(image_id, image_ids)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        name = entry_name("results", first, results[first])
        what = unknown_reference(
            name, "image_id", int(image_id[first]), image_ids.tolist(), gt_source
        )
        raise CocoEvalInputError(
            f"{subject(source)}: {what}; {int(missing.sum())} of {len(results)} results name "
            "images it lacks: evaluate against the ground truth these results were made for"
        )
    return image_id


def check_result_fields(results: list, source: str, iou_type: str = "bbox") -> None:
    """Check each result's ``category_id``, ``score`` and box as :func:`load_results` does.

    For the reference backends, which take the list as it is: pycocotools fails on a string
    score with a ``TypeError`` and scores a NaN one. Call it after
    :func:`check_result_images`, which names entries that are not objects.

    Raises:
        CocoEvalInputError: the first result with a field of the wrong type.
    """
    where = _Where(results, "results", source)
    _column(results, "category_id", np.int64, where)
    _column(results, "score", np.float64, where)
    if _has_boxes(results):
        _boxes(results, where)
    if iou_type == "segm" and any(r.get("segmentation") is None for r in results):
        raise where.error(("segmentation",))


def _has_boxes(results: list) -> bool:
    """Whether results carry boxes: pycocotools asks the first result only (for areas too)."""
    return bool(results) and isinstance(results[0], dict) and bool(results[0].get("bbox"))


@dataclass
class _Where:
    """Where converted values come from, to word an error the way every COCO reader does.

    Attributes:
        rows: the whole section, so that an entry's place is the file's (``annotations[7]``).
        section: its name; source: the file (or the label of data in memory).
        kept: ``[len(rows)]`` bool, the rows the converted values come from; ``None``: all.
        optional: keys that may be missing (this reader fills a default).
    """

    rows: list
    section: str
    source: str
    kept: np.ndarray | None = None
    optional: tuple[str, ...] = ()

    def error(self, keys: tuple[str, ...]) -> CocoFormatError:
        """The first kept entry breaking a rule for ``keys``: a Python loop, for errors only."""
        indices = None if self.kept is None else np.flatnonzero(self.kept).tolist()
        found = field_error(self.rows, keys, self.section, self.source, indices, self.optional)
        if found is not None:
            return found
        # Every entry follows the rules, yet NumPy refused one: say which field, at least.
        return CocoFormatError(
            f"{subject(self.source)}: the {', '.join(map(repr, keys))} of '{self.section}' "
            "cannot be converted to numbers"
        )


_CONVERSION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


# the value types each column takes as they are: JSON's, and the float subclass np.float64
_JSON_TYPES: dict[type, frozenset[type]] = {
    np.int64: frozenset({int}),
    np.float64: frozenset({int, float, np.float64}),
}
# ... and, for data built in memory, NumPy's scalars (the coco_file rules take them too)
_NUMBER_TYPES: dict[type, type] = {np.int64: numbers.Integral, np.float64: numbers.Real}


def _column(rows: list, key: str, dtype: type, where: _Where) -> np.ndarray:
    """``rows[i][key]`` for every row as an ``[len(rows)]`` array, converted in one pass.

    Integers (``int64``) must be integers and numbers (``float64``) finite numbers: NumPy
    would convert ``"0.5"`` and ``True``, cut ``1.5`` to ``1`` and read ``None`` as NaN. The
    check looks at the set of the column's value types, a few milliseconds a column; only on
    failure does :meth:`_Where.error` walk the rows to name the first bad one.
    """
    try:
        values = list(map(itemgetter(key), rows))
    except _CONVERSION_ERRORS:  # a row without the key, or not an object
        raise where.error((key,)) from None
    types = set(map(type, values))
    if not types <= _JSON_TYPES[dtype] and not all(map(_number_type(dtype), types)):
        raise where.error((key,))
    try:
        column: np.ndarray = np.fromiter(values, dtype, len(values))
    except _CONVERSION_ERRORS:  # an integer beyond 64 bits
        raise where.error((key,)) from None
    if dtype is np.float64 and not np.isfinite(column).all():
        raise where.error((key,))
    return column


def _number_type(dtype: type) -> Callable[[type], bool]:
    """Whether a value type converts to ``dtype`` by the coco_file rules (no ``bool``)."""
    kind = _NUMBER_TYPES[dtype]
    return lambda t: issubclass(t, kind) and not issubclass(t, bool)


def _boxes(rows: list, where: _Where) -> np.ndarray:
    """Every row's ``bbox`` as ``float64 [len(rows), 4]`` xywh, converted in one pass.

    When every box is a list of 4 (as parsed JSON is), the numbers are read as one flat
    stream, twice as fast as NumPy reading a list of lists.
    """
    if not rows:
        return np.zeros((0, 4))
    try:
        boxes = list(map(itemgetter("bbox"), rows))
        if set(map(type, boxes)) == {list} and set(map(len, boxes)) == {4}:
            flat = np.fromiter(chain.from_iterable(boxes), np.float64, 4 * len(boxes))
            box = flat.reshape(-1, 4)
        else:
            box = np.array(boxes, dtype=np.float64)  # tuples, arrays: results made in memory
    except _CONVERSION_ERRORS:
        box = None
    # NaN and infinity are refused; the values' types are not checked (a string "10" would
    # convert): a type check of 4 values a row costs 25 ms per 250k results
    if box is None or box.shape != (len(rows), 4) or not np.isfinite(box).all():
        raise where.error(("bbox",))
    return box


def _image_sizes(images: list, source: str) -> dict[int, tuple[int, int]]:
    """``{image_id: (height, width)}``; a missing size is 0 (only segm evaluation needs it)."""
    try:
        return {int(i["id"]): (int(i.get("height", 0)), int(i.get("width", 0))) for i in images}
    except _CONVERSION_ERRORS:
        where = _Where(images, "images", source, optional=("height", "width"))
        raise where.error(("id", "height", "width")) from None


def _categories(categories: list, source: str) -> list[tuple[int, str]]:
    """``(id, name)`` sorted by id; a missing name is the id."""
    try:
        return sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in categories)
    except _CONVERSION_ERRORS:
        raise _Where(categories, "categories", source).error(("id",)) from None
