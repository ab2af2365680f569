"""COCO ground truth and results files -> flat NumPy arrays, with pycocotools' selection rules.

Only annotations whose image is in ``images`` and whose category is in ``categories`` count
(pycocotools' ``getAnnIds(imgIds, catIds)``); image and category ids are sorted; within an
(image, category) pair annotations keep their file order, which decides ties.
"""

from __future__ import annotations

import contextlib
import gc
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:  # about 5x faster than json on a results file of 200k detections
    import orjson

    def _parse(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a dependency

    def _parse(data: bytes) -> Any:
        return json.loads(data)


class CocoEvalInputError(ValueError):
    """A ground-truth or results file that cannot be evaluated; the message names the file."""


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


@contextlib.contextmanager
def gc_paused():
    """Parsing a results file makes ~10^6 containers, none of them cyclic; the cyclic garbage
    collector would otherwise walk every live object many times over (seconds, not ms)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, with an error that names it."""
    path = Path(path)
    try:
        with gc_paused():
            return _parse(path.read_bytes())
    except OSError as exc:
        raise CocoEvalInputError(f"{path}: cannot read the file ({exc.strerror})") from exc
    except ValueError as exc:
        raise CocoEvalInputError(f"{path}: not valid JSON ({exc})") from exc


def load_ground_truth(data: dict | str | Path, source: str = "<ground truth>") -> GroundTruth:
    """A COCO instances dict (or file) -> ``GroundTruth``."""
    if not isinstance(data, dict):
        source, data = str(data), read_json(data)
    if not isinstance(data, dict):
        raise CocoEvalInputError(f"{source}: the ground truth must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoEvalInputError(f"{source}: the ground truth has no {key!r} list")
    images = {
        int(im["id"]): (int(im.get("height", 0)), int(im.get("width", 0))) for im in data["images"]
    }
    cats = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in data["categories"])
    image_ids = np.array(sorted(images), dtype=np.int64)
    cat_ids = np.array([c for c, _ in cats], dtype=np.int64)
    anns = data["annotations"]
    where = (source, "annotation")
    ann_image = _column(anns, "image_id", np.int64, where)
    ann_cat = _column(anns, "category_id", np.int64, where)
    keep = np.isin(ann_image, image_ids) & np.isin(ann_cat, cat_ids)
    kept = [a for a, k in zip(anns, keep.tolist()) if k]
    box = _boxes(kept, where)
    area = _column(kept, "area", np.float64, where)
    # pycocotools' order: by image id, then file order; stable, so file order decides ties
    order = np.argsort(ann_image[keep], kind="stable")
    return GroundTruth(
        image_ids=image_ids,
        cat_ids=cat_ids,
        cat_names=[n for _, n in cats],
        image=np.searchsorted(image_ids, ann_image[keep])[order],
        cat=np.searchsorted(cat_ids, ann_cat[keep])[order],
        ann_id=np.array([int(a.get("id", 0)) for a in kept], dtype=np.int64)[order],
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

    Raises:
        CocoEvalInputError: not a list, a missing key, or an image id the ground truth lacks.
    """
    if not isinstance(results, list):
        source, results = str(results), read_json(results)
    if not isinstance(results, list):
        raise CocoEvalInputError(f"{source}: results must be a JSON list of detections")
    where = (source, "detection")
    image_id = _column(results, "image_id", np.int64, where)
    cat_id = _column(results, "category_id", np.int64, where)
    score = _column(results, "score", np.float64, where)
    _check_ids(image_id, gt.image_ids, "image", source, gt.source)
    known_cat = np.isin(cat_id, gt.cat_ids)
    if not known_cat.all():
        unknown = sorted(set(cat_id[~known_cat].tolist()))
        warnings.warn(
            f"{source}: {int((~known_cat).sum())} detections name category ids {unknown[:10]} "
            f"that {gt.source} does not list; they are not scored (as in pycocotools)",
            stacklevel=2,
        )
    segm = None
    # pycocotools takes areas from the boxes whenever the first result has a box
    has_boxes = bool(results) and bool(results[0].get("bbox"))
    if iou_type == "segm" or not has_boxes:
        segm = [r.get("segmentation") for r in results]
        if any(s is None for s in segm):
            _raise_for_row(results, "segmentation", where, lambda v: v is not None)
    if has_boxes:
        box = _boxes(results, where)
        area = box[:, 2] * box[:, 3]
    else:
        from pycocotools import mask as mask_utils

        area = np.array([float(mask_utils.area(s)) for s in segm], dtype=np.float64)
        box = np.array([mask_utils.toBbox(s) for s in segm], dtype=np.float64).reshape(-1, 4)
    keep = known_cat
    return Detections(
        image=np.searchsorted(gt.image_ids, image_id[keep]),
        cat=np.searchsorted(gt.cat_ids, cat_id[keep]),
        box=box[keep],
        score=score[keep],
        area=area[keep],
        segm=None if segm is None else [s for s, k in zip(segm, keep.tolist()) if k],
    )


def _column(rows: list, key: str, dtype: type, where: tuple[str, str]) -> np.ndarray:
    """``rows[i][key]`` for every row as an array; a clear error names the first bad row."""
    try:
        return np.fromiter((r[key] for r in rows), dtype, len(rows))
    except (KeyError, TypeError, ValueError):
        ok = int if dtype is np.int64 else float
        _raise_for_row(rows, key, where, lambda v: isinstance(v, ok) and not isinstance(v, bool))
        raise  # not reached: _raise_for_row found the row


def _boxes(rows: list, where: tuple[str, str]) -> np.ndarray:
    try:
        box = np.array([r["bbox"] for r in rows], dtype=np.float64)
        if box.shape == (len(rows), 4):
            return box
    except (KeyError, TypeError, ValueError):
        pass
    _raise_for_row(rows, "bbox", where, _is_box)
    return np.zeros((0, 4))  # not reached


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _raise_for_row(rows: list, key: str, where: tuple[str, str], ok) -> None:
    """Raise for the first row whose ``key`` is missing or fails ``ok``."""
    source, what = where
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CocoEvalInputError(f"{source}: {what} #{i} is not an object: {row!r:.80}")
        if key not in row or not ok(row[key]):
            ident = f" (id {row['id']})" if "id" in row else ""
            found = "is missing" if key not in row else f"is {row[key]!r:.80}"
            raise CocoEvalInputError(
                f"{source}: {what} #{i}{ident}: {key!r} {found}; "
                f"every {what} needs {_EXPECTED.get(key, 'a value')}"
            )


_EXPECTED = {
    "image_id": "an integer 'image_id'",
    "category_id": "an integer 'category_id'",
    "score": "a number 'score'",
    "area": "a number 'area'",
    "bbox": "a 'bbox' of 4 numbers [x, y, width, height]",
    "segmentation": "a 'segmentation' (RLE) for segm evaluation",
}


def _check_ids(ids: np.ndarray, known: np.ndarray, what: str, source: str, gt_source: str) -> None:
    missing = ~np.isin(ids, known)
    if missing.any():
        bad = sorted(set(ids[missing].tolist()))
        raise CocoEvalInputError(
            f"{source}: {int(missing.sum())} detections name {what} ids that {gt_source} does "
            f"not have: {bad[:10]}{' ...' if len(bad) > 10 else ''}; evaluate against the "
            "ground truth these results were made for"
        )
