"""Semantic-segmentation metrics from a pixel confusion matrix.

``segmentation_confusion`` counts (true class, predicted class) pixel pairs with one
``torch.bincount`` on the inputs' device; ``SegmentationEvaluator`` accumulates that ``K x K``
matrix over batches (on the CPU, so memory never grows with the dataset) and derives every
metric from it: mIoU, pixel accuracy (aAcc), mean class accuracy (mAcc), frequency-weighted
IoU and the per-class IoU and accuracy.

Undefined values (the mmsegmentation convention): for class ``k`` with ``TP``, ``FP``,
``FN`` pixels, ``IoU_k = TP / (TP + FP + FN)`` is undefined (0 / 0) when the class occurs in
neither the targets nor the predictions, and ``acc_k = TP / (TP + FN)`` is undefined when it
never occurs in the targets. Undefined values are ``NaN`` in tensors, ``None`` in JSON and
``n/a`` in tables, and the means skip them (``nanmean``): mIoU averages the classes seen in
the targets or the predictions, mAcc the classes seen in the targets. A class that is only
predicted, never true, has IoU 0 and so still lowers mIoU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from cvkit.registry import METRICS
from cvkit.structures import SegBatch, SegPrediction

_SUMMARY = ("mIoU", "mean_acc", "pixel_acc", "fwIoU")


def segmentation_confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Count (true class, predicted class) pairs over the pixels whose target is not ignored.

    Args:
        pred: ``Tensor[N]`` or ``Tensor[B, H, W]`` (any shape) predicted class indices.
        target: the same shape, true class indices or ``ignore_index`` (any integer dtype,
            ``uint8`` masks included).
        num_classes: ``K``.
        ignore_index: target value of pixels that are not counted; predictions there are not
            looked at (they may be anything, e.g. a padding value).

    Returns:
        ``Tensor[K, K]`` int64 on the inputs' device; ``[i, j]`` counts pixels of true class
        ``i`` predicted as ``j`` (rows: true, columns: predicted).

    Raises:
        ValueError: the shapes differ, or a counted target or prediction is outside
            ``[0, K)`` (the message names the bad values and how many pixels have them).
        TypeError: a tensor is not of an integer dtype.

    Example:
        >>> segmentation_confusion(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 255, 1]), 2)
        tensor([[1, 0],
                [1, 1]])
    """
    if num_classes < 1:
        raise ValueError(f"segmentation_confusion: num_classes must be >= 1, got {num_classes}")
    if pred.shape != target.shape:
        raise ValueError(
            "segmentation_confusion: pred and target must have the same shape, got "
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    for name, values in (("target", target), ("prediction", pred)):
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise TypeError(
                f"segmentation_confusion: {name} must hold integer class indices, "
                f"got {values.dtype}"
            )
    target = target.to(pred.device)
    counted = target != ignore_index
    _check_range("target", target, counted, num_classes, ignore_index)
    _check_range("prediction", pred, counted, num_classes, ignore_index)
    # Ignored pixels go to one extra bin that is dropped: no boolean indexing, so no
    # data-dependent shape on the GPU.
    extra = num_classes * num_classes
    index = torch.where(counted, target.long() * num_classes + pred.long(), extra)
    counts = torch.bincount(index.flatten(), minlength=extra + 1)
    return counts[:extra].reshape(num_classes, num_classes)


def _check_range(
    name: str, values: torch.Tensor, counted: torch.Tensor, num_classes: int, ignore_index: int
) -> None:
    bad = counted & ((values < 0) | (values >= num_classes))
    if not bad.any():
        return
    found, counts = torch.unique(values[bad], return_counts=True)
    shown = ", ".join(f"{v} ({n} px)" for v, n in zip(found[:5].tolist(), counts[:5].tolist()))
    more = f" and {len(found) - 5} more values" if len(found) > 5 else ""
    hint = (
        f"; is num_classes right, or are ignored pixels marked with another value than "
        f"ignore_index={ignore_index}?"
        if name == "target"
        else ""
    )
    raise ValueError(
        f"segmentation_confusion: {name} values outside [0, {num_classes}) that are not "
        f"ignored: {shown}{more}; {int(bad.sum())} of {values.numel()} pixels{hint}"
    )


def segmentation_metrics(confusion: torch.Tensor) -> dict[str, Any]:
    """Every metric of a pixel confusion matrix; undefined values are ``NaN`` (module doc).

    Args:
        confusion: ``Tensor[K, K]`` counts, rows true, columns predicted.

    Returns:
        ``{"IoU", "acc": Tensor[K] float64 (NaN: undefined), "support", "predicted":
        Tensor[K] int64 (pixels of each class in the targets / the predictions),
        "mIoU", "mean_acc", "pixel_acc", "fwIoU": float}``; the floats are NaN without pixels.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(
            f"segmentation_metrics: expected a K x K matrix, got {tuple(confusion.shape)}"
        )
    counts = confusion.detach().cpu().double()
    tp = counts.diagonal()
    support = counts.sum(dim=1)  # TP + FN
    predicted = counts.sum(dim=0)  # TP + FP
    union = support + predicted - tp
    iou = tp / union  # 0 / 0 -> NaN: in neither targets nor predictions
    acc = tp / support  # 0 / 0 -> NaN: never in the targets
    total = support.sum()
    # Frequency weights are 0 exactly where acc is NaN; IoU may be 0 or NaN there, so zero it.
    fw_iou = (support / total * torch.nan_to_num(iou)).sum() if total > 0 else math.nan
    return {
        "IoU": iou,
        "acc": acc,
        "support": support.long(),
        "predicted": predicted.long(),
        "mIoU": _nanmean(iou),
        "mean_acc": _nanmean(acc),
        "pixel_acc": (tp.sum() / total).item() if total > 0 else math.nan,
        "fwIoU": float(fw_iou),
    }


def _nanmean(values: torch.Tensor) -> float:
    defined = values[~values.isnan()]
    return defined.mean().item() if defined.numel() else math.nan


@METRICS.register()
class SegmentationEvaluator:
    """mIoU, pixel accuracy, mean class accuracy and fwIoU, accumulated over batches.

    Only the ``K x K`` pixel confusion matrix is kept (int64, on the CPU). Classes that are
    in neither the targets nor the predictions have no IoU and are left out of the means;
    see the module docstring for the exact convention.

    Args:
        num_classes: ``K``.
        ignore_index: target value of pixels that are not counted.
        class_names: ``K`` names used by ``summary_table`` and ``to_json_dict`` unless they
            are given names; default ``"0"``, ``"1"``, ...

    Example:
        >>> ev = SegmentationEvaluator(num_classes=2)
        >>> ev.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 1], [0, 255]]]))
        >>> ev.compute()["mIoU"]
        0.5
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"SegmentationEvaluator: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = None if class_names is None else self._check_names(class_names)
        self.reset()

    def reset(self) -> None:
        """Forget every pixel seen so far."""
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def state(self) -> torch.Tensor:
        """The confusion matrix so far, to ``merge`` into another process's evaluator."""
        return self._confusion.clone()

    def merge(self, states: Sequence[torch.Tensor]) -> None:
        """Add other evaluators' ``state()`` (distributed evaluation)."""
        for confusion in states:
            self._confusion += confusion

    @property
    def num_pixels(self) -> int:
        """Pixels counted so far (ignored pixels excluded)."""
        return int(self._confusion.sum())

    @property
    def confusion(self) -> torch.Tensor:
        """``Tensor[K, K]`` int64 counts so far (a copy); rows true, columns predicted."""
        return self._confusion.clone()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: ``Tensor[B, K, H, W]`` logits or probabilities (the argmax over ``K`` is
                taken), or ``Tensor[B, H, W]`` integer class indices; any device.
            target: ``Tensor[B, H, W]`` integer class indices or ``ignore_index``.

        Raises:
            ValueError: wrong shapes or out-of-range values; nothing is added then.
            TypeError: class indices that are not integers.
        """
        if pred.ndim == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"SegmentationEvaluator.update: logits must be [B, {self.num_classes}, H, W],"
                    f" got {tuple(pred.shape)}"
                )
            pred = pred.argmax(dim=1)
        elif pred.ndim != 3:
            raise ValueError(
                "SegmentationEvaluator.update: pred must be logits [B, K, H, W] or class "
                f"indices [B, H, W], got {tuple(pred.shape)}"
            )
        if target.shape != pred.shape:
            raise ValueError(
                f"SegmentationEvaluator.update: target must be {list(pred.shape)} ([B, H, W]),"
                f" got {tuple(target.shape)}; resize the logits to the target's size first"
            )
        # Counting happens on the inputs' device; only the K x K counts cross to the CPU.
        confusion = segmentation_confusion(pred, target, self.num_classes, self.ignore_index)
        self._confusion += confusion.cpu()

    def process(self, batch: SegBatch, predictions: Sequence[SegPrediction]) -> None:
        """Add a batch from the task protocol: its masks and the model's predictions.

        Pixels are scored at the batch's resolution (after the evaluation transforms): each
        prediction, in its file's pixels, is compared with its mask cropped to the image's
        size before padding. Where the evaluation transforms resized the image, the predicted
        classes are resized back to that size (nearest); give the evaluation data transforms
        that do not resize for numbers at each file's own resolution.
        """
        if batch.masks is None:
            raise ValueError("SegmentationEvaluator.process needs a batch with masks")
        # one canvas for the batch, so the counting is one bincount: outside each image the
        # masks hold the collate's padding (ignore_index), which is never counted
        predicted = torch.zeros_like(batch.masks)
        for i, (pred, (h, w)) in enumerate(zip(predictions, batch.image_sizes)):
            predicted[i, :h, :w] = pred.mask_at((h, w))
        self.update(predicted, batch.masks)

    def compute(self) -> dict[str, float]:
        """``mIoU``, ``mean_acc`` (mAcc), ``pixel_acc`` (aAcc) and ``fwIoU``, as fractions.

        The per-class IoU and accuracy are in ``per_class()`` (tensors) and ``to_json_dict()``
        (by class name), so this dict stays flat floats for logging.

        Raises:
            ValueError: no counted pixels yet.
        """
        self._require_pixels()
        stats = segmentation_metrics(self._confusion)
        return {k: stats[k] for k in _SUMMARY}

    def per_class(self) -> dict[str, Any]:
        """``segmentation_metrics`` of the confusion matrix so far (NaN: undefined)."""
        return segmentation_metrics(self._confusion)

    def summary_table(self, class_names: Sequence[str] | None = None) -> str:
        """A plain-text table: IoU, accuracy and pixel count per class, then the means.

        Args:
            class_names: ``K`` names; default the constructor's, else ``"0"``, ``"1"``, ...
        """
        per_class = self._per_class_by_name(class_names)
        header = ("class", "IoU", "acc", "pixels")
        cells = [header] + [
            (name, _fmt(m["IoU"]), _fmt(m["acc"]), str(m["support"]))
            for name, m in per_class.items()
        ]
        widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
        lines = [
            "  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])])
            for row in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        metrics = self.compute()
        n = self.num_pixels
        lines += ["", "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({n} pixels)"]
        absent = [name for name, m in per_class.items() if m["IoU"] is None]
        if absent:
            lines.append(
                f"n/a (in neither targets nor predictions, not averaged): {_names(absent)}"
            )
        return "\n".join(lines)

    def to_json_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Every number as plain JSON data; undefined values are ``None``."""
        per_class = self._per_class_by_name(class_names)
        return {
            "num_pixels": self.num_pixels,
            "ignore_index": self.ignore_index,
            "metrics": self.compute(),
            "per_class": per_class,
            "class_names": list(per_class),
            "confusion": self._confusion.tolist(),
        }

    def _per_class_by_name(self, class_names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        """``{name: {"IoU", "acc": float | None, "support", "predicted": int}}``."""
        self._require_pixels()
        names = self._check_names(class_names) if class_names is not None else self.class_names
        names = names or [str(i) for i in range(self.num_classes)]
        stats = self.per_class()
        return {
            name: {
                "IoU": _json_float(stats["IoU"][i].item()),
                "acc": _json_float(stats["acc"][i].item()),
                "support": int(stats["support"][i]),
                "predicted": int(stats["predicted"][i]),
            }
            for i, name in enumerate(names)
        }

    def _require_pixels(self) -> None:
        if self.num_pixels == 0:
            raise ValueError(
                "SegmentationEvaluator: no counted pixels; call update() first (every pixel "
                f"so far had target ignore_index={self.ignore_index})"
            )

    def _check_names(self, class_names: Sequence[str]) -> list[str]:
        names = [str(name) for name in class_names]
        if len(names) != self.num_classes:
            raise ValueError(
                f"SegmentationEvaluator: {len(names)} class names for {self.num_classes} classes"
            )
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"SegmentationEvaluator: class names repeat: {dupes}")
        return names


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _names(names: list[str], limit: int = 10) -> str:
    """``"a, b, c"``, cut after ``limit`` names so a 150-class run stays readable."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
