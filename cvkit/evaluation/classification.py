"""Classification metrics from logits or probabilities.

``topk_accuracy`` scores one tensor of predictions; ``confusion_matrix`` and
``per_class_metrics`` give per-class precision, recall and F1; ``ClassificationEvaluator``
accumulates all of them over batches, keeping only counts (a ``K x K`` confusion matrix and
top-k hit counts) on the CPU, never the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cvkit.registry import METRICS
from cvkit.structures import ClsBatch, ClsPrediction

_AVERAGED = ("precision", "recall", "f1")


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share of rows whose true label is among the ``k`` highest scores.

    Args:
        scores: ``Tensor[N, K]`` logits or probabilities.
        labels: ``Tensor[N]`` int64.
    """
    if scores.shape[0] == 0:
        raise ValueError("topk_accuracy: no samples")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Count (true class, predicted class) pairs.

    Args:
        preds: ``Tensor[N]`` predicted class indices in ``[0, num_classes)``.
        labels: ``Tensor[N]`` true class indices in ``[0, num_classes)``.
        num_classes: ``K``.

    Returns:
        ``Tensor[K, K]`` int64 on the inputs' device; ``[i, j]`` counts samples of true class
        ``i`` predicted as ``j`` (rows: true, columns: predicted).

    Raises:
        ValueError: shapes differ or are not 1-D, or a value is outside ``[0, K)`` (the message
            names the first bad value).
        TypeError: a tensor is not of an integer dtype.
    """
    if num_classes < 1:
        raise ValueError(f"confusion_matrix: num_classes must be at least 1, got {num_classes}")
    if preds.ndim != 1 or preds.shape != labels.shape:
        raise ValueError(
            "confusion_matrix: preds and labels must be 1-D of the same length, got "
            f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)}"
        )
    for name, values in (("label", labels), ("prediction", preds)):
        _check_class_indices(name, values, num_classes)
    flat = labels.long() * num_classes + preds.long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_class_indices(name: str, values: torch.Tensor, num_classes: int) -> None:
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(
            f"confusion_matrix: {name}s must be integer class indices, got {values.dtype}"
        )
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        first = values[bad][0].item()
        raise ValueError(
            f"confusion_matrix: {name} {first} is outside [0, {num_classes}) "
            f"({int(bad.sum())} of {values.numel()} {name}s out of range)"
        )


def per_class_metrics(confusion: torch.Tensor) -> dict[str, Any]:
    """Precision, recall, F1 and support of every class, with macro and weighted averages.

    A class never predicted has precision 0; a class that never occurs has recall 0; F1 is 0
    whenever precision and recall are both 0. This is scikit-learn's ``zero_division=0``
    convention with ``labels=range(K)``: such classes count as 0 in the macro average (so a
    class absent from both truth and predictions pulls it down), while the weighted average,
    weighted by support, ignores classes that never occur.

    Args:
        confusion: ``Tensor[K, K]`` counts, rows true, columns predicted.

    Returns:
        ``{"precision", "recall", "f1": Tensor[K] float64, "support": Tensor[K] int64,
        "macro": {"precision", "recall", "f1": float}, "weighted": {... same}}``.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(
            f"per_class_metrics: expected a K x K matrix, got {tuple(confusion.shape)}"
        )
    counts = confusion.detach().cpu().double()
    tp = counts.diagonal()
    predicted = counts.sum(dim=0)
    support = counts.sum(dim=1)
    per_class = {
        "precision": _safe_divide(tp, predicted),
        "recall": _safe_divide(tp, support),
        # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is defined whenever either is.
        "f1": _safe_divide(2 * tp, predicted + support),
    }
    total = support.sum()
    weights = support / total if total > 0 else torch.zeros_like(support)
    return {
        **per_class,
        "support": support.long(),
        "macro": {k: v.mean().item() for k, v in per_class.items()},
        "weighted": {k: (v * weights).sum().item() for k, v in per_class.items()},
    }


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


@METRICS.register()
class ClassificationEvaluator:
    """Top-k accuracy and per-class precision / recall / F1, accumulated over batches.

    Only counts are kept (on the CPU): the confusion matrix and the top-k hit counts, so memory
    does not grow with the dataset.

    Args:
        num_classes: ``K``.
        topk: the ``k`` of each ``top{k}`` accuracy; each is clipped to ``K`` when computed, so
            ``top5`` is 1.0 with 3 classes.

    Example:
        >>> ev = ClassificationEvaluator(num_classes=3)
        >>> ev.update(torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]))
        >>> ev.compute()["top1"]
        0.5
    """

    def __init__(self, num_classes: int, topk: tuple[int, ...] = (1, 5)) -> None:
        if num_classes < 1:
            raise ValueError(
                f"ClassificationEvaluator: num_classes must be >= 1, got {num_classes}"
            )
        if not topk or any(k < 1 for k in topk):
            raise ValueError(f"ClassificationEvaluator: topk must be positive ints, got {topk}")
        self.num_classes = num_classes
        self.topk = tuple(topk)
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen so far."""
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self._hits = torch.zeros(len(self.topk), dtype=torch.int64)

    @property
    def num_samples(self) -> int:
        return int(self._confusion.sum())

    @property
    def confusion(self) -> torch.Tensor:
        """``Tensor[K, K]`` int64 counts so far (a copy); rows true, columns predicted."""
        return self._confusion.clone()

    @torch.no_grad()
    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch.

        Args:
            scores: ``Tensor[B, K]`` logits or probabilities, on any device.
            labels: ``Tensor[B]`` integer class indices.

        Raises:
            ValueError: wrong shapes or a label outside ``[0, K)``; nothing is added then.
        """
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"ClassificationEvaluator.update: scores must be [B, {self.num_classes}], "
                f"got {tuple(scores.shape)}"
            )
        if labels.shape != scores.shape[:1]:
            raise ValueError(
                f"ClassificationEvaluator.update: labels must be [{scores.shape[0]}], "
                f"got {tuple(labels.shape)}"
            )
        top = scores.topk(min(max(self.topk), self.num_classes), dim=1).indices
        hit = top == labels.to(top.device)[:, None]
        hits = torch.stack([hit[:, :k].sum() for k in self.topk])
        # Only B indices and a few counts cross to the CPU; the argmax is top[:, 0] so that
        # top1 and the confusion matrix's diagonal agree even when scores tie.
        confusion = confusion_matrix(top[:, 0].cpu(), labels.cpu(), self.num_classes)
        self._confusion += confusion
        self._hits += hits.cpu()

    def state(self) -> dict[str, torch.Tensor]:
        """The counts so far, to ``merge`` into another process's evaluator."""
        return {"confusion": self._confusion.clone(), "hits": self._hits.clone()}

    def merge(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        """Add the counts of other evaluators' ``state()`` (distributed evaluation)."""
        for state in states:
            self._confusion += state["confusion"]
            self._hits += state["hits"]

    def process(self, batch: ClsBatch, predictions: Sequence[ClsPrediction]) -> None:
        """Add a batch from the task protocol: its labels and the model's predictions."""
        if batch.labels is None:
            raise ValueError("ClassificationEvaluator.process needs a batch with labels")
        self.update(torch.stack([p.probs for p in predictions]), batch.labels)

    def compute(self) -> dict[str, float]:
        """``top{k}`` accuracies, ``macro_*`` and ``weighted_*`` precision, recall and F1.

        Raises:
            ValueError: no samples yet.
        """
        n = self._require_samples()
        metrics = {f"top{k}": hits / n for k, hits in zip(self.topk, self._hits.tolist())}
        stats = per_class_metrics(self._confusion)
        for avg in ("macro", "weighted"):
            metrics.update({f"{avg}_{k}": stats[avg][k] for k in _AVERAGED})
        return metrics

    def per_class(self) -> dict[str, Any]:
        """``per_class_metrics`` of the confusion matrix so far."""
        return per_class_metrics(self._confusion)

    def summary_table(self, class_names: Sequence[str] | None = None) -> str:
        """A plain-text table for a terminal: one row per class, the averages, the accuracies.

        Classes that were never predicted or never occurred are listed under the table, since
        their zeros are a convention rather than a measurement.

        Args:
            class_names: ``K`` names; default ``"0"``, ``"1"``, ...
        """
        per_class = self._per_class_by_name(class_names)
        stats = self.per_class()
        n = self.num_samples
        rows = [(name, *(m[k] for k in _AVERAGED), m["support"]) for name, m in per_class.items()]
        rows += [(f"{a} avg", *(stats[a][k] for k in _AVERAGED), n) for a in ("macro", "weighted")]
        accuracies = "  ".join(
            f"{k} {v:.3f}" for k, v in self.compute().items() if k.startswith("top")
        )
        lines = [*_format_table(rows, num_classes=len(per_class)), ""]
        lines.append(f"accuracy: {accuracies}  ({n} sample{'s' * (n != 1)})")
        predicted = self._confusion.sum(dim=0).tolist()
        unseen = [name for name, m in per_class.items() if m["support"] == 0]
        never = [name for name, count in zip(per_class, predicted) if count == 0]
        if unseen:
            lines.append(f"no samples (recall counted as 0): {_name_list(unseen)}")
        if never:
            lines.append(f"never predicted (precision counted as 0): {_name_list(never)}")
        return "\n".join(lines)

    def to_json_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Every number as plain JSON data; per-class entries keyed by class name."""
        per_class = self._per_class_by_name(class_names)
        stats = self.per_class()
        return {
            "num_samples": self.num_samples,
            "metrics": self.compute(),
            "per_class": per_class,
            "macro": stats["macro"],
            "weighted": stats["weighted"],
            "class_names": list(per_class),
            "confusion": self._confusion.tolist(),
        }

    def _per_class_by_name(self, class_names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        """``{name: {"precision", "recall", "f1": float, "support": int}}`` in class order."""
        names = self._names(class_names)
        stats = self.per_class()
        return {
            name: {
                **{k: stats[k][i].item() for k in _AVERAGED},
                "support": int(stats["support"][i]),
            }
            for i, name in enumerate(names)
        }

    def _require_samples(self) -> int:
        n = self.num_samples
        if n == 0:
            raise ValueError("ClassificationEvaluator: no samples; call update() first")
        return n

    def _names(self, class_names: Sequence[str] | None) -> list[str]:
        self._require_samples()
        if class_names is None:
            return [str(i) for i in range(self.num_classes)]
        names = [str(name) for name in class_names]
        if len(names) != self.num_classes:
            raise ValueError(
                f"ClassificationEvaluator: {len(names)} class names for {self.num_classes} classes"
            )
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"ClassificationEvaluator: class names repeat: {dupes}")
        return names


def _format_table(rows: list[tuple], num_classes: int) -> list[str]:
    """Lines of aligned columns (names left, numbers right); a rule after the class rows.

    Args:
        rows: ``(name, precision, recall, f1, support)`` per class, then the average rows.
        num_classes: how many of ``rows`` are classes.
    """
    header = ("class", "precision", "recall", "F1", "support")
    cells = [header] + [(name, *(f"{v:.3f}" for v in m), str(s)) for name, *m, s in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]

    def line(row: Sequence[str]) -> str:
        name, *numbers = row
        aligned = (v.rjust(w) for v, w in zip(numbers, widths[1:]))
        return "  ".join([name.ljust(widths[0]), *aligned])

    rule = "  ".join("-" * w for w in widths)
    lines = [line(row) for row in cells]
    return [lines[0], rule, *lines[1 : num_classes + 1], rule, *lines[num_classes + 1 :]]


def _name_list(names: list[str], limit: int = 10) -> str:
    """``"a, b, c"``, cut after ``limit`` names so a 1000-class run stays readable."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
