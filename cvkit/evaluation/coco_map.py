"""COCO mAP: the 12 summary stats, per-class AP / AP50 / AR and the precision-recall arrays.

Three backends give the same numbers: ``"cvkit"`` (the default: pycocotools' COCOeval
semantics, vectorised, see :mod:`cvkit.evaluation.coco`), ``"pycocotools"`` (the reference)
and ``"faster-coco-eval"`` (when installed).

Results are COCO's format (``image_id``, ``category_id``, ``bbox`` as xywh in the original
image's pixels, ``score``; ``segmentation`` as RLE for ``segm``); ``detections_to_coco``
converts cvkit's predictions at this edge, mapping contiguous labels back to category ids.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cvkit.coco_file import check_results_list, check_sections, gc_paused, read_json
from cvkit.evaluation.coco.load import (
    CocoEvalInputError,
    Detections,
    GroundTruth,
    check_result_fields,
    check_result_images,
    load_ground_truth,
    load_results,
)
from cvkit.evaluation.coco.summary import STAT_NAMES, summarize

if TYPE_CHECKING:
    from cvkit.structures import DetPrediction

BACKENDS = ("cvkit", "pycocotools", "faster-coco-eval")
Backend = Literal["cvkit", "pycocotools", "faster-coco-eval"]
IouType = Literal["bbox", "segm"]

__all__ = [
    "BACKENDS",
    "STAT_NAMES",
    "CocoEvalInputError",
    "CocoResult",
    "detections_to_coco",
    "evaluate_coco",
]


@dataclass
class CocoResult:
    """Everything a COCO evaluation computes.

    Attributes:
        stats: the 12 numbers of ``COCOeval.summarize`` by name (``AP``, ``AP50``...); ``-1``
            where nothing defines them (no ground truth in that area range).
        per_class: class name -> ``{"AP", "AP50", "AP75", "AR100", "num_gt"}``; the metrics
            are ``None`` for a category without ground truth (pycocotools' -1).
        summary: pycocotools' 12 printed lines.
        precision: ``[T=10, R=101, K, A=4, M=3]`` (IoU .50:.05:.95, recall 0:.01:1, areas
            all/small/medium/large, maxDets 1/10/100), ``-1`` where undefined.
        recall: ``[T, K, A, M]``; scores: ``[T, R, K, A, M]`` score at each recall point.
        class_names, cat_ids: the ``K`` categories, sorted by id.
        backend: which backend computed it; timings: seconds per phase.
        inputs: with ``evaluate_coco(..., keep_inputs=True)``, the ground truth and results
            as cvkit's arrays (what the report's confusion matrix reads), else ``None``.
    """

    stats: dict[str, float]
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""
    precision: np.ndarray | None = None
    recall: np.ndarray | None = None
    scores: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    cat_ids: list[int] = field(default_factory=list)
    backend: str = "cvkit"
    timings: dict[str, float] = field(default_factory=dict)
    inputs: tuple[GroundTruth, Detections] | None = field(default=None, repr=False, compare=False)

    def table(self) -> str:
        """The per-class table; ``n/a`` for categories without ground truth."""
        rows = [f"{'class':<20} {'AP':>7} {'AP50':>7} {'AP75':>7} {'AR100':>7} {'gt':>6}"]
        for name, r in self.per_class.items():
            cells = [
                "n/a" if r[k] is None else f"{r[k]:.4f}" for k in ("AP", "AP50", "AP75", "AR100")
            ]
            rows.append(f"{name:<20} " + " ".join(f"{c:>7}" for c in cells) + f" {r['num_gt']:>6}")
        return "\n".join(rows)

    def to_json(self, numpy: bool = False) -> dict[str, Any]:
        """Every number, JSON-ready: arrays as nested lists, or with ``numpy=True`` as
        C-contiguous NumPy arrays for ``orjson.dumps(..., option=orjson.OPT_SERIALIZE_NUMPY)``,
        which writes the same text several times faster than it writes the lists."""
        with gc_paused():  # ~10^6 new floats; the cyclic GC would walk them over and over
            arrays = {
                k: None if v is None else np.ascontiguousarray(v) if numpy else v.tolist()
                for k, v in (
                    ("precision", self.precision),
                    ("recall", self.recall),
                    ("scores", self.scores),
                )
            }
        return {
            "backend": self.backend,
            "stats": self.stats,
            "per_class": self.per_class,
            "class_names": self.class_names,
            "cat_ids": self.cat_ids,
            "timings": self.timings,
            **arrays,
        }


def detections_to_coco(
    predictions: Sequence[DetPrediction], cat_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """cvkit predictions -> COCO results dicts; the one writer of COCO results in cvkit.

    Args:
        predictions: per image, ``boxes`` ``Tensor[K, 4]`` xyxy in the original image's
            pixels, ``scores`` ``Tensor[K]``, ``labels`` ``Tensor[K]`` (contiguous, from 0),
            ``image_id``.
        cat_ids: ``[num_classes]`` the dataset's category id of each label.

    Returns:
        One ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per detection, in
        prediction order; the box rounded to 3 decimals (computed in float64 before
        rounding), the score to 5.
    """
    # Only callers holding tensors get here, so importing torch (through ops) costs nothing;
    # at module level it would make `cvkit coco-eval` load torch.
    from cvkit.ops import box_convert

    results = []
    for p in predictions:
        xywh = box_convert(p.boxes.detach().cpu().double(), "xyxy", "xywh")
        for box, score, label in zip(xywh.tolist(), p.scores.tolist(), p.labels.tolist()):
            results.append(
                {
                    "image_id": int(p.image_id),
                    "category_id": int(cat_ids[label]),
                    "bbox": [round(v, 3) for v in box],
                    "score": round(float(score), 5),
                }
            )
    return results


def evaluate_coco(
    ground_truth: Any,
    results: list[dict[str, Any]] | str | Path,
    iou_type: IouType = "bbox",
    backend: Backend = "cvkit",
    keep_inputs: bool = False,
) -> CocoResult:
    """Score ``results`` against ``ground_truth``.

    Args:
        ground_truth: a COCO instances file, its dict, or a pycocotools ``COCO``.
        results: a results file or list.
        iou_type: ``"bbox"`` or ``"segm"`` (masks as RLE, IoU through pycocotools' mask API).
        backend: see the module docstring.
        keep_inputs: keep both as cvkit's arrays in ``result.inputs`` (for a report that
            needs the boxes; the files are read once).

    Raises:
        CocoEvalInputError: (``cvkit.coco_file.CocoFormatError``) a file that cannot be read,
            is not COCO, or results naming image ids the ground truth lacks; the wording is
            the training datasets' (:mod:`cvkit.coco_file`). A missing file's error is also a
            ``FileNotFoundError``.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    start = time.perf_counter()
    # Reading makes ~10^6 containers, none of them cyclic: with the collector running, it
    # would walk them again and again while they live (a tenth of a second each time).
    with gc_paused():
        gt_dict, gt_source = _as_dict(ground_truth)
        res_list, res_source = _as_list(results)
        loaded = time.perf_counter() - start
        run = _evaluate_cvkit if backend == "cvkit" else _evaluate_reference
        result = run(gt_dict, gt_source, res_list, res_source, iou_type, backend)
        if keep_inputs and result.inputs is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the evaluation has warned about these
                gt = load_ground_truth(gt_dict, gt_source)
                result.inputs = gt, load_results(res_list, gt, iou_type, res_source)
        elif not keep_inputs:
            result.inputs = None
    result.timings = {"read": loaded, **result.timings}
    result.timings["total"] = time.perf_counter() - start
    return result


def _as_dict(ground_truth: Any) -> tuple[dict, str]:
    if isinstance(ground_truth, dict):
        data, source = ground_truth, "<ground truth>"
    elif isinstance(ground_truth, (str, Path)):
        data, source = read_json(ground_truth), str(ground_truth)
    elif hasattr(ground_truth, "dataset"):  # a pycocotools COCO
        data, source = ground_truth.dataset, "<ground truth>"
    else:
        raise TypeError(f"ground_truth must be a path, a dict or a COCO, got {type(ground_truth)}")
    return check_sections(data, source), source


def _as_list(results: Any) -> tuple[list, str]:
    if isinstance(results, (str, Path)):
        return check_results_list(read_json(results), str(results)), str(results)
    return check_results_list(results, "<results>"), "<results>"


def _evaluate_cvkit(gt_dict, gt_source, res_list, res_source, iou_type, backend) -> CocoResult:
    from cvkit.evaluation.coco.accumulate import accumulate
    from cvkit.evaluation.coco.match import match

    t0 = time.perf_counter()
    gt = load_ground_truth(gt_dict, gt_source)
    dets = load_results(res_list, gt, iou_type, res_source)
    t1 = time.perf_counter()
    segm_iou = None
    if iou_type == "segm":
        from cvkit.evaluation.coco.segm import MaskIou

        segm_iou = MaskIou(gt, dets)
    matches = match(gt, dets, segm_iou)
    t2 = time.perf_counter()
    curves = accumulate(gt, dets, matches)
    stats, text = summarize(curves.precision, curves.recall)
    t3 = time.perf_counter()
    num_gt = np.bincount(gt.cat[~gt.crowd], minlength=len(gt.cat_ids))
    result = _result(
        stats, text, curves.precision, curves.recall, curves.scores, gt.cat_names,
        gt.cat_ids.tolist(), num_gt.tolist(), backend,
        {"load": t1 - t0, "evaluate": t2 - t1, "accumulate": t3 - t2},
    )  # fmt: skip
    result.inputs = gt, dets
    return result


def _evaluate_reference(gt_dict, gt_source, res_list, res_source, iou_type, backend):
    """pycocotools, or faster-coco-eval (same API); both print, so their output is kept."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
    else:
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as Eval
        except ImportError as exc:
            raise ValueError(
                "backend 'faster-coco-eval' is not installed: pip install faster-coco-eval"
            ) from exc
    gt_ids = np.array(sorted({int(im["id"]) for im in gt_dict["images"]}), dtype=np.int64)
    # as the cvkit backend words them: both tools would fail on a string, or score a NaN
    check_result_images(res_list, gt_ids, res_source, gt_source)
    check_result_fields(res_list, res_source, iou_type)
    cats = sorted(gt_dict["categories"], key=lambda c: c["id"])
    num_gt = _count_gt(gt_dict, [c["id"] for c in cats])
    names, cat_ids = [str(c.get("name", c["id"])) for c in cats], [int(c["id"]) for c in cats]
    if not res_list:  # pycocotools cannot load an empty results list; nothing is detected
        return _evaluate_cvkit(gt_dict, gt_source, res_list, res_source, iou_type, backend)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as log:
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt_dict)  # both tools add keys to what they are given
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in res_list])
        ev = Eval(coco_gt, coco_dt, iou_type)
        t1 = time.perf_counter()
        ev.evaluate()
        t2 = time.perf_counter()
        ev.accumulate()
        t3 = time.perf_counter()
    p, r, s = ev.eval["precision"], ev.eval["recall"], ev.eval["scores"]
    stats, text = summarize(p, r)
    return _result(
        stats, text + "\n" + log.getvalue(), p, r, s, names, cat_ids, num_gt, backend,
        {"load": t1 - t0, "evaluate": t2 - t1, "accumulate": t3 - t2},
    )  # fmt: skip


def _count_gt(gt_dict: dict, cat_ids: list[int]) -> list[int]:
    images = {im["id"] for im in gt_dict["images"]}
    counts = dict.fromkeys(cat_ids, 0)
    for a in gt_dict["annotations"]:
        if a.get("image_id") in images and a.get("category_id") in counts and not a.get("iscrowd"):
            counts[a["category_id"]] += 1
    return [counts[c] for c in cat_ids]


def _result(stats, text, precision, recall, scores, names, cat_ids, num_gt, backend, timings):
    per_class = {}
    for k, name in enumerate(names):
        per_class[name] = {
            "AP": _mean(precision[:, :, k, 0, -1]),
            "AP50": _mean(precision[0, :, k, 0, -1]),
            "AP75": _mean(precision[5, :, k, 0, -1]),
            "AR100": _mean(recall[:, k, 0, -1]),
            "num_gt": int(num_gt[k]),
        }
    return CocoResult(
        stats={n: float(v) for n, v in zip(STAT_NAMES, stats)},
        per_class=per_class,
        summary=text,
        precision=precision,
        recall=recall,
        scores=scores,
        class_names=list(names),
        cat_ids=list(cat_ids),
        backend=backend,
        timings=timings,
    )


def _mean(values: np.ndarray) -> float | None:
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else None
