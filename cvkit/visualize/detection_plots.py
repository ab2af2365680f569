"""PNG plots of a COCO detection evaluation: precision-recall curves and the confusion matrix.

Inputs are plain arrays: pycocotools' ``precision [T=10, R=101, K, A=4, M=3]`` (``-1`` where
a class has no ground truth; see :class:`cvkit.evaluation.coco_map.CocoResult`) and the
``[K + 1, K + 1]`` counts of :mod:`cvkit.evaluation.det_confusion`. Curves are for area
``all`` and ``maxDets=100``, the setting of the headline AP, so the AP in each legend is the
mean of the curve drawn beside it. Like :mod:`cvkit.visualize.plots`, figures use matplotlib's
object API and leave ``pyplot``'s global state alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.lines import Line2D

from cvkit.visualize.plots import (
    MAX_ANNOTATED_CLASSES,
    _annotate_counts,
    _as_numpy,
    _label_axes,
    _matrix_side,
    _row_shares,
)

DPI = 120
GRID_CLASSES = 30  # small multiples in one grid figure; every class also gets its own PNG
RECALL = np.linspace(0.0, 1.0, 101)
# (legend label, IoU threshold index or None for the mean over .50:.95, colour, line width)
_CURVES = (
    ("IoU=.50", 0, "tab:blue", 1.3),
    ("IoU=.75", 5, "tab:orange", 1.3),
    ("IoU=.50:.95", None, "black", 2.0),
)


def plot_pr_curve(precision: Any, path: str | Path, title: str | None = None) -> Path:
    """The mean precision-recall curve over the classes with ground truth.

    Args:
        precision: ``[T, R, K, A, M]`` (pycocotools' ``eval["precision"]``).
        path: the PNG to write; its folder is created.
        title: default: how many classes the mean is over.
    """
    p = _all_area(precision)  # [T, R, K]
    valid = (p > -1).all(axis=(0, 1))
    fig, ax = _figure(5.6, 4.4)
    if valid.any():
        _draw_curves(ax, p[:, :, valid].mean(axis=2), legend=True)
    else:
        _no_ground_truth(ax)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    ax.set_title(
        title or f"precision-recall, mean over {int(valid.sum())} classes (area all, maxDets 100)",
        fontsize=11,
        y=1.0,
        pad=6,
    )
    return _save(fig, path)


def plot_pr_per_class(
    precision: Any,
    class_names: Sequence[str],
    folder: str | Path,
    cat_ids: Sequence[int] | None = None,
) -> list[Path]:
    """One PNG per class with ground truth, named ``<id>_<name>.png``, into ``folder``.

    Args:
        precision: ``[T, R, K, A, M]``.
        class_names: the ``K`` names; cat_ids: the ``K`` ids for the file names (default
            ``1..K``), zero-padded so the files sort by id.

    Returns:
        The paths written, in class order (classes without ground truth are skipped).
    """
    p = _all_area(precision)
    names = _names(class_names, p, "plot_pr_per_class")
    ids = list(cat_ids) if cat_ids is not None else list(range(1, len(names) + 1))
    if len(ids) != len(names):
        raise ValueError(f"plot_pr_per_class: {len(ids)} category ids for {len(names)} classes")
    width = len(str(max(ids, default=0)))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # One figure, drawn once without the curves, legend and title; per class only those are
    # drawn over a copy of it (matplotlib's blitting). Drawing 80 whole figures takes seconds.
    fig, ax = _figure(4.8, 3.8)
    lines = _draw_curves(ax, np.zeros((p.shape[0], len(RECALL))), legend=False)
    title = ax.set_title("", fontsize=11, y=1.0, pad=6)
    for artist in (*lines, title):
        artist.set_animated(True)
    canvas = cast(FigureCanvasAgg, fig.canvas)  # _figure gave it an Agg canvas
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    written = []
    for k, (name, cat_id) in enumerate(zip(names, ids)):
        if not (p[:, :, k] > -1).all():
            continue
        canvas.restore_region(background)
        for line, (label, curve) in zip(lines, _curve_values(p[:, :, k])):
            line.set_ydata(curve)
            line.set_label(label)
        legend = ax.legend(loc=_free_corner(p[:, :, k]), fontsize=9, framealpha=0.85)
        title.set_text(f"{name} (id {cat_id})")
        for artist in (*lines, legend, title):
            ax.draw_artist(artist)
        path = folder / f"{cat_id:0{width}d}_{_file_safe(name)}.png"
        imsave(path, np.asarray(canvas.buffer_rgba())[..., :3], dpi=DPI)
        written.append(path)
    return written


def plot_pr_grid(
    precision: Any,
    class_names: Sequence[str],
    path: str | Path,
    max_classes: int = GRID_CLASSES,
) -> Path:
    """Small multiples: one precision-recall panel per class, for the first ``max_classes``.

    Each panel shows IoU .50, .75 and the mean over .50:.95, with AP and AP50 in its title;
    a class without ground truth gets an empty panel that says so.
    """
    p = _all_area(precision)
    names = _names(class_names, p, "plot_pr_grid")[:max_classes]
    n = len(names)
    if n == 0:
        raise ValueError("plot_pr_grid: no classes")
    cols = min(6, n)
    rows = -(-n // cols)
    # A fixed layout (inches): a layout engine would cost seconds with 30 panels.
    top, bottom, left, cell_w, cell_h = 0.85, 0.55, 0.6, 2.3, 2.0
    width, height = left + cell_w * cols + 0.15, top + cell_h * rows + bottom
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=left / width, right=1 - 0.15 / width, bottom=bottom / height,
        top=1 - top / height, wspace=0.12, hspace=0.3,
    )  # fmt: skip
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for k, ax in enumerate(axes):
        if k >= n:
            ax.set_visible(False)
            continue
        name = _shorten(names[k], 22)
        if (p[:, :, k] > -1).all():
            _draw_curves(ax, p[:, :, k], legend=False, small=True)
            ap, ap50 = p[:, :, k].mean(), p[0, :, k].mean()
            ax.set_title(f"{name}\nAP {ap:.3f}  AP50 {ap50:.3f}", fontsize=8, y=1.0, pad=3)
        else:
            _no_ground_truth(ax, small=True)
            ax.set_title(f"{name}\nno ground truth", fontsize=8, y=1.0, pad=3)
    handles = [Line2D([], [], color=c, linewidth=w, label=label) for label, _, c, w in _CURVES]
    total = p.shape[2]
    shown = f"first {n} of {total} classes" if n < total else f"{n} classes"
    fig.suptitle(
        f"precision-recall per class ({shown}; area all, maxDets 100)",
        fontsize=11, y=1 - 0.08 / height, va="top",
    )  # fmt: skip
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.32 / height),
        ncols=3, fontsize=9, frameon=False,
    )  # fmt: skip
    fig.supxlabel("recall", fontsize=9, y=0.08 / height, va="bottom")
    fig.supylabel("precision", fontsize=9, x=0.08 / width, ha="left")
    return _save(fig, path)


def plot_detection_confusion(
    counts: Any,
    class_names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str | None = None,
    iou_threshold: float | None = None,
    score_threshold: float | None = None,
) -> Path:
    """A detection confusion matrix with its background row and column.

    Args:
        counts: ``[K + 1, K + 1]``: rows gt class then background (false positives), columns
            predicted class then background (missed gts).
        class_names: the ``K`` names (without background).
        path: the PNG to write; its folder is created.
        normalize: colour each cell by its share of the row (a class's gts; the false
            positives), so rare classes read like common ones; raw counts fill the cells up
            to ``MAX_ANNOTATED_CLASSES`` classes.
        title: default: the numbers of gts and detections counted, and the thresholds
            when given (they only label the figure).
    """
    counts = _as_numpy(counts).astype(np.int64)
    k = len(class_names) + 1
    if counts.shape != (k, k):
        raise ValueError(
            f"plot_detection_confusion: expected {k} x {k} counts for {k - 1} classes "
            f"and background, got {counts.shape}"
        )
    names = [*(str(n) for n in class_names), "background"]
    values = _row_shares(counts) if normalize else counts.astype(float)
    side = _matrix_side(k)
    fig = Figure(figsize=(side, side), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    norm = Normalize(vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    image = ax.imshow(values, cmap="Blues", norm=norm, interpolation="nearest")
    colorbar = fig.colorbar(image, cax=ax.inset_axes((1.03, 0.0, 0.035, 1.0)))
    colorbar.set_label("share of the row" if normalize else "count")
    _label_axes(ax, names)
    # the background row and column are a different kind of count: set them apart
    ax.axhline(k - 1.5, color="0.3", linewidth=1.2)
    ax.axvline(k - 1.5, color="0.3", linewidth=1.2)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    if k <= MAX_ANNOTATED_CLASSES:
        _annotate_counts(ax, counts, image)
    title = title or _confusion_title(counts, iou_threshold, score_threshold)
    ax.set_title(
        f"{title}\nbackground row: false positives; background column: missed gts",
        fontsize=10,
        pad=10,
    )
    return _save(fig, path, tight=True)


def _confusion_title(counts: np.ndarray, iou: float | None, score: float | None) -> str:
    settings = [
        f"{name} ≥ {value:g}"
        for name, value in (("IoU", iou), ("score", score))
        if value is not None
    ]
    return (
        "detection confusion"
        + (f" ({', '.join(settings)})" if settings else "")
        + f": {int(counts[:-1].sum())} gts, {int(counts[:, :-1].sum())} detections"
    )


def _all_area(precision: Any) -> np.ndarray:
    """``[T, R, K, A, M]`` -> ``[T, R, K]`` at area ``all``, ``maxDets=100``."""
    p = _as_numpy(precision)
    if p.ndim != 5:
        raise ValueError(f"expected precision [T, R, K, A, M], got shape {p.shape}")
    return p[:, :, :, 0, -1]


def _names(class_names: Sequence[str], p: np.ndarray, caller: str) -> list[str]:
    if len(class_names) != p.shape[2]:
        raise ValueError(f"{caller}: {len(class_names)} class names for {p.shape[2]} classes")
    return [str(n) for n in class_names]


def _curve_values(p: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``p [T, R]`` -> ``(legend label with AP, precision [R])`` per curve of ``_CURVES``."""
    out = []
    for label, t, _, _ in _CURVES:
        curve = p.mean(axis=0) if t is None else p[t]
        out.append((f"{label}  AP {curve.mean():.3f}", curve))
    return out


def _draw_curves(ax: Any, p: np.ndarray, legend: bool, small: bool = False) -> list[Any]:
    """``p [T, R]`` of one class (or a class mean): IoU .50, .75 and the mean over all T.

    Returns the three lines.
    """
    lines = []
    for (label, curve), (_, _, color, width) in zip(_curve_values(p), _CURVES):
        scale = 0.8 if small else 1.0
        lines += ax.plot(RECALL, curve, color=color, linewidth=width * scale, label=label)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    if small:
        _small_ticks(ax)
        return lines
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    if legend:
        ax.legend(loc=_free_corner(p), fontsize=9, framealpha=0.85)
    return lines


def _free_corner(p: np.ndarray) -> str:
    """Where the legend hides the fewest curve points: upper right or lower left.

    A weak detector's curves run low (the upper right is empty), a strong one's run high
    (the lower left is). matplotlib's ``loc="best"`` decides the same thing, but slowly.
    """
    curves = np.concatenate([p, p.mean(axis=0, keepdims=True)])
    right = RECALL >= 0.5
    upper_right = np.count_nonzero(curves[:, right] >= 0.72)
    lower_left = np.count_nonzero(curves[:, ~right] <= 0.3)
    return "upper right" if upper_right <= lower_left else "lower left"


def _no_ground_truth(ax: Any, small: bool = False) -> None:
    ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8 if small else 11,
            color="0.4", transform=ax.transAxes)  # fmt: skip
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    if small:
        _small_ticks(ax)


def _small_ticks(ax: Any) -> None:
    """Three ticks a side: enough in a small panel, and each tick costs drawing time."""
    ax.set_xticks((0.0, 0.5, 1.0))
    ax.set_yticks((0.0, 0.5, 1.0))
    ax.tick_params(labelsize=7)


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # a fixed layout: one drawing per save, and the same frame in every per-class PNG
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.91)
    return fig, fig.add_subplot()


def _shorten(name: str, length: int) -> str:
    return name if len(name) <= length else name[: length - 1] + "…"


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "class"


def _save(fig: Figure, path: str | Path, tight: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"bbox_inches": "tight", "pad_inches": 0.15} if tight else {}
    fig.savefig(path, dpi=DPI, facecolor="white", **extra)
    return path
