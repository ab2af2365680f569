"""PNG plots of evaluation results: confusion matrices and training curves.

Figures are drawn with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never
``pyplot``: nothing here touches matplotlib's global state, so a user's chosen backend and open
figures are left alone. Tensors are accepted wherever arrays are (converted with NumPy), and
torch is not imported.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

DPI = 150
MAX_ANNOTATED_CLASSES = 30  # beyond this, per-cell numbers are too small to read
_CMAP = "Blues"


def plot_confusion_matrix(
    confusion: Any,
    class_names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Write a confusion matrix as a PNG: colours per row share, raw counts in the cells.

    Args:
        confusion: ``[K, K]`` counts (Tensor or array), rows true class, columns predicted.
        class_names: ``K`` names for both axes.
        path: the PNG to write; its folder is created.
        normalize: colour each cell by its share of the true class's samples (row-normalised),
            so rare classes are as readable as common ones; ``False`` colours by raw count.
        title: default: the sample count and accuracy.

    Returns:
        ``path`` as a ``Path``.
    """
    counts = _as_numpy(confusion)
    k = counts.shape[0] if counts.ndim == 2 else -1
    if counts.ndim != 2 or counts.shape[1] != k or k == 0:
        raise ValueError(f"plot_confusion_matrix: expected a K x K matrix, got {counts.shape}")
    if len(class_names) != k:
        raise ValueError(f"plot_confusion_matrix: {len(class_names)} class names for {k} classes")
    names = [str(n) for n in class_names]
    values = _row_shares(counts) if normalize else counts.astype(float)

    # The matrix fills the figure; labels, colour bar and title lie outside it, and saving
    # with a tight bounding box grows the image to take them in. This costs one layout pass
    # fewer than a layout engine, which matters at 40+ classes.
    side = _matrix_side(k)
    fig = Figure(figsize=(side, side), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    norm = Normalize(vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    image = ax.imshow(values, cmap=_CMAP, norm=norm, interpolation="nearest")
    # A colour bar in an inset of the matrix's axes is exactly as tall as the matrix.
    colorbar = fig.colorbar(image, cax=ax.inset_axes((1.03, 0.0, 0.035, 1.0)))
    colorbar.set_label("share of the true class" if normalize else "samples")
    _label_axes(ax, names)
    if k <= MAX_ANNOTATED_CLASSES:
        _annotate_counts(ax, counts, image)
    total = int(counts.sum())
    accuracy = np.trace(counts) / total if total else 0.0
    ax.set_title(
        title or f"confusion matrix: {total} samples, accuracy {accuracy:.1%}", fontsize=12
    )
    return _save(fig, path)


def plot_curves(
    records: Iterable[Mapping[str, Any]], keys: Sequence[str], path: str | Path
) -> Path:
    """Write training curves as a PNG: one subplot per key, each against the step.

    Args:
        records: ``metrics.jsonl``-like dicts with ``"phase"``, ``"step"``, ``"epoch"`` and
            metric values; each phase (``train``, ``val``) is its own line.
        keys: the metrics to plot, e.g. ``["loss", "top1"]``.
        path: the PNG to write; its folder is created.

    Raises:
        ValueError: no keys, or a key no record has a number for (the message lists those
            that do).
    """
    records = list(records)
    if not keys:
        raise ValueError("plot_curves: no keys to plot")
    series = {key: _series(records, key) for key in keys}
    missing = [key for key, by_phase in series.items() if not by_phase]
    if missing:
        raise ValueError(
            f"plot_curves: no numeric values for {missing}; "
            f"the records have {_numeric_keys(records)}"
        )

    fig = Figure(figsize=(8.0, 1.0 + 2.6 * len(keys)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, by_phase) in zip(axes, series.items()):
        for phase, (steps, values) in by_phase.items():
            # Evaluations are sparse (one per epoch): markers keep single points visible.
            marker = "o" if len(steps) < 50 else None
            ax.plot(steps, values, label=phase, marker=marker, markersize=3, linewidth=1.2)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small", frameon=False)
    axes[-1].set_xlabel("step")
    return _save(fig, path)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu()
    return np.asarray(x)


def _row_shares(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; rows with no samples stay 0."""
    totals = counts.sum(axis=1, keepdims=True).astype(float)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def _matrix_side(k: int) -> float:
    """Inches of the matrix: 0.4 a class while cells hold numbers, then 0.2 more a class."""
    if k <= MAX_ANNOTATED_CLASSES:
        return max(3.5, 0.4 * k)
    return min(0.4 * MAX_ANNOTATED_CLASSES + 0.2 * (k - MAX_ANNOTATED_CLASSES), 26.0)


def _label_axes(ax: Any, names: Sequence[str]) -> None:
    k = len(names)
    fontsize = _label_fontsize(k)
    ticks = np.arange(k)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    # Rotate the column names only when the longest would not fit under its cell.
    name_inches = max(len(n) for n in names) * 0.6 * fontsize / 72
    rotate = name_inches > 0.9 * _matrix_side(k) / k
    ax.set_xticklabels(
        names,
        fontsize=fontsize,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        rotation_mode="anchor",
    )
    ax.set_yticklabels(names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.tick_params(length=2)
    # Thin white lines between cells separate neighbours of similar colour. Two line
    # collections draw much faster than a grid on minor ticks (a Tick object per line).
    edges = ticks[:-1] + 0.5
    width = 0.8 if k <= MAX_ANNOTATED_CLASSES else 0.3
    ax.hlines(edges, -0.5, k - 0.5, colors="white", linewidth=width)
    ax.vlines(edges, -0.5, k - 0.5, colors="white", linewidth=width)


def _label_fontsize(k: int) -> float:
    """Points: 10 for a few classes, 8 while cells are 0.4 inch, then shrinking with the cells."""
    if k <= 8:
        return 10.0
    cell_inches = _matrix_side(k) / k
    return max(3.0, min(8.0, 20.0 * cell_inches))


def _annotate_counts(ax: Any, counts: np.ndarray, image: Any) -> None:
    """The raw count in each cell, white on dark cells and black on light ones."""
    fontsize = _label_fontsize(counts.shape[0])
    rgba = image.cmap(image.norm(image.get_array()))
    luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    for (i, j), count in np.ndenumerate(counts):
        color = "white" if luminance[i, j] < 0.5 else "black"
        # Zeros are faint so that the mistakes that did happen stand out.
        alpha = 0.35 if count == 0 else 1.0
        ax.text(
            j,
            i,
            f"{int(count)}",
            ha="center",
            va="center",
            fontsize=fontsize,
            color=color,
            alpha=alpha,
        )


def _series(
    records: list[Mapping[str, Any]], key: str
) -> dict[str, tuple[list[float], list[float]]]:
    """``{phase: (steps, values)}`` for the records with a finite number under ``key``."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        value, step = record.get(key), record.get("step")
        if _is_number(value) and _is_number(step) and math.isfinite(value):
            steps, values = out.setdefault(str(record.get("phase", "")), ([], []))
            steps.append(step)
            values.append(value)
    return out


def _numeric_keys(records: list[Mapping[str, Any]]) -> list[str]:
    keys = {k for r in records for k, v in r.items() if _is_number(v)}
    return sorted(keys - {"step", "epoch"})


def _is_number(value: Any) -> TypeGuard[float]:
    # numbers.Real also covers NumPy scalars; a bool is an int but not a measurement.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.15)
    return path
