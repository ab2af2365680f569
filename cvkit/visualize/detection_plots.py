"""PNG plots of a COCO detection evaluation: precision-recall curves and the confusion matrix.

Inputs are plain arrays: pycocotools' ``precision [T=10, R=101, K, A=4, M=3]`` (``-1`` where
a class has no ground truth; see :class:`cvkit.evaluation.coco_map.CocoResult`) and the
``[K + 1, K + 1]`` counts of :mod:`cvkit.evaluation.det_confusion`. Curves are for area
``all`` and ``maxDets=100``, the setting of the headline AP, so the AP in each legend is the
mean of the curve drawn beside it. Like :mod:`cvkit.visualize.plots`, figures use matplotlib's
object API and leave ``pyplot``'s global state alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import text_to_path
from matplotlib.transforms import offset_copy

from cvkit.visualize.plots import (
    MAX_ANNOTATED_CLASSES,
    _annotate_counts,
    _as_numpy,
    _label_fontsize,
    _matrix_side,
    _row_shares,
)

DPI = 120
GRID_CLASSES = 100  # small multiples in one grid figure (COCO's 80 all fit)
GRID_DPI = 100
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
    legend = ax.legend(handles=lines, fontsize=9, framealpha=0.85)
    for artist in (*lines, title, legend):
        artist.set_animated(True)
    canvas = cast(FigureCanvasAgg, fig.canvas)  # _figure gave it an Agg canvas
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    written = []
    for k, (name, cat_id) in enumerate(zip(names, ids)):
        if not (p[:, :, k] > -1).all():
            continue
        canvas.restore_region(background)
        for line, text, (label, curve) in zip(lines, legend.get_texts(), _curve_values(p[:, :, k])):
            line.set_ydata(curve)
            text.set_text(label)
        legend.set_loc(_free_corner(p[:, :, k]))
        title.set_text(f"{name} (id {cat_id})")
        for artist in (*lines, legend, title):
            ax.draw_artist(artist)
        path = folder / f"{cat_id:0{width}d}_{_file_safe(name)}.png"
        # straight to PIL, at zlib's fastest level: files a little larger, written faster
        rgb = PIL.Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
        rgb.save(path, format="png", compress_level=1, dpi=(DPI, DPI))
        written.append(path)
    return written


def pr_curve_data(
    precision: Any, class_names: Sequence[str], cat_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """The per-class curves these plots draw, as JSON-ready data (to draw them again later).

    Args:
        precision: ``[T, R, K, A, M]``; class_names: the ``K`` names; cat_ids: their ids
            (default ``1..K``).

    Returns:
        ``{"area": "all", "max_dets": 100, "recall": [R], "curves": [3 names], "classes":
        [K entries]}``; each entry ``{"id", "name", "precision": {curve name: [R]}}``, its
        ``precision`` ``None`` for a class without ground truth.
    """
    p = _all_area(precision)
    names = _names(class_names, p, "pr_curve_data")
    ids = list(cat_ids) if cat_ids is not None else list(range(1, len(names) + 1))
    classes = []
    for k, (name, cat_id) in enumerate(zip(names, ids)):
        curves = None
        if (p[:, :, k] > -1).all():
            curves = {
                label: (p[:, :, k].mean(axis=0) if t is None else p[t, :, k]).tolist()
                for label, t, _, _ in _CURVES
            }
        classes.append({"id": int(cat_id), "name": name, "precision": curves})
    return {
        "area": "all",
        "max_dets": 100,
        "recall": RECALL.tolist(),
        "curves": [label for label, *_ in _CURVES],
        "classes": classes,
    }


def plot_pr_grid(
    precision: Any,
    class_names: Sequence[str],
    path: str | Path,
    max_classes: int = GRID_CLASSES,
) -> Path:
    """Small multiples: one precision-recall panel per class, for the first ``max_classes``.

    Each panel shows IoU .50, .75 and the mean over .50:.95, with AP and AP50 in its title;
    a class without ground truth gets an empty panel that says so. Every panel is drawn into
    one set of axes (a line collection per curve kind, one frame collection, the titles as
    plain text), which draws 80 panels in a fraction of the time of 80 matplotlib axes.
    """
    p = _all_area(precision)
    names = _names(class_names, p, "plot_pr_grid")[:max_classes]
    n = len(names)
    if n == 0:
        raise ValueError("plot_pr_grid: no classes")
    cols = n if n <= 4 else math.ceil(math.sqrt(1.25 * n))
    rows = -(-n // cols)
    g = _GRID
    natural = g["left"] + g["cell_w"] * cols + g["right"]
    width = max(natural, 6.0)  # room for the title and the legend above a narrow grid
    height = g["top"] + g["cell_h"] * rows + g["bottom"]
    fig = Figure(figsize=(width, height), dpi=GRID_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # data coordinates are inches from the corner
    ax.set_xlim(0.0, width)
    ax.set_ylim(0.0, height)
    ax.set_axis_off()
    # each panel's plot area: lower-left corner (inches), from the top row down
    x0 = g["left"] + (width - natural) / 2 + g["cell_w"] * (np.arange(n) % cols)
    y0 = height - g["top"] - g["cell_h"] * (np.arange(n) // cols + 1) + g["bottom_gap"]
    has_gt = np.asarray((p[:, :, :n] > -1).all(axis=(0, 1)))
    _grid_frames(ax, x0, y0)
    _grid_curves(ax, p[:, :, :n], x0, y0, has_gt)
    _grid_labels(ax, names, p, x0, y0, has_gt, cols, rows)
    total = p.shape[2]
    shown = f"first {n} of {total} classes" if n < total else f"{n} class{'es' * (n > 1)}"
    text: dict[str, Any] = {"transform": ax.transData, "clip_on": False}
    ax.text(width / 2, height - 0.08, f"precision-recall per class ({shown}; area all, "
            "maxDets 100)", fontsize=11, ha="center", va="top", **text)  # fmt: skip
    handles = [Line2D([], [], color=c, linewidth=w, label=label) for label, _, c, w in _CURVES]
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.36 / height),
        ncols=3, fontsize=9, frameon=False,
    )  # fmt: skip
    ax.text(width / 2, 0.06, "recall", fontsize=9, ha="center", va="bottom", **text)
    ax.text(x0[0] - g["left"] + 0.06, height / 2, "precision", fontsize=9, rotation=90,
            ha="left", va="center", **text)  # fmt: skip
    return _save(fig, path, dpi=GRID_DPI)


# Inches: the margins around the grid, each cell, and the plot area inside a cell (the rest
# of the cell holds the panel's two-line title above and a gap below).
_GRID = {"left": 0.62, "right": 0.15, "top": 0.8, "bottom": 0.45, "cell_w": 1.75,
         "cell_h": 1.55, "plot_w": 1.5, "plot_h": 1.02, "bottom_gap": 0.12}  # fmt: skip


def _grid_frames(ax: Any, x0: np.ndarray, y0: np.ndarray) -> None:
    """Each panel's frame and its light lines at recall and precision 0.5."""
    w, h = _GRID["plot_w"], _GRID["plot_h"]
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=float) * (w, h)
    origin = np.stack([x0, y0], axis=1)[:, None, :]
    ax.add_collection(LineCollection(list(origin + corners), colors="0.55", linewidths=0.6))
    half_y = 0.5 / 1.02 * h
    grid = np.concatenate([
        origin + np.array([[0.5 * w, 0.0], [0.5 * w, h]]),
        origin + np.array([[0.0, half_y], [w, half_y]]),
    ])  # fmt: skip
    ax.add_collection(LineCollection(list(grid), colors="0.85", linewidths=0.5))


def _grid_curves(
    ax: Any, p: np.ndarray, x0: np.ndarray, y0: np.ndarray, has_gt: np.ndarray
) -> None:
    """The three curves of every class with ground truth: one line collection per kind."""
    w, h = _GRID["plot_w"], _GRID["plot_h"]
    k = np.flatnonzero(has_gt)
    for _, t, color, width in _CURVES:
        curves = p[:, :, k].mean(axis=0) if t is None else p[t][:, k]  # [R, n]
        xy = np.stack(
            [x0[k, None] + RECALL[None, :] * w, y0[k, None] + curves.T / 1.02 * h], axis=2
        )
        ax.add_collection(LineCollection(list(xy), colors=color, linewidths=width * 0.7))


def _grid_labels(ax, names, p, x0, y0, has_gt, cols: int, rows: int) -> None:
    """Panel titles (name, AP, AP50), and 0 / .5 / 1 along the left column and bottom row."""
    w, h = _GRID["plot_w"], _GRID["plot_h"]
    text: dict[str, Any] = {"transform": ax.transData, "clip_on": False}
    for k, name in enumerate(names):
        short = _shorten(name, 24)
        if has_gt[k]:
            ap, ap50 = p[:, :, k].mean(), p[0, :, k].mean()
            title = f"{short}\nAP {ap:.3f}  AP50 {ap50:.3f}"
        else:
            title = f"{short}\nno ground truth"
            ax.text(x0[k] + w / 2, y0[k] + h / 2, "no ground truth", fontsize=7, color="0.4",
                    ha="center", va="center", **text)  # fmt: skip
        ax.text(x0[k] + w / 2, y0[k] + h + 0.04, title, fontsize=7, ha="center", va="bottom",
                linespacing=1.1, **text)  # fmt: skip
    ticks = ((0.0, "0"), (0.5, ".5"), (1.0, "1"))
    for k in range(0, len(names), cols):  # the first panel of each row
        for v, s in ticks:
            ax.text(x0[k] - 0.04, y0[k] + v / 1.02 * h, s, fontsize=6.5, ha="right",
                    va="center", **text)  # fmt: skip
    last_row = range((rows - 1) * cols, len(names))
    above = range(max(0, len(names) - cols), (rows - 1) * cols)  # no panel below them
    for k in (*last_row, *above):
        for v, s in ticks:
            ax.text(x0[k] + v * w, y0[k] - 0.03, s, fontsize=6.5, ha="center", va="top",
                    **text)  # fmt: skip


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
    widest = _widest(names, _label_fontsize(k))
    # inches around the matrix for the names, the colour bar and the title; more than
    # enough, as the drawing is cropped to what was drawn
    left = bottom = widest + 0.8
    right, top = 0.065 * side + 1.2, 0.9
    width, height = left + side + right, bottom + side + top
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
    norm = Normalize(vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    # a mesh of k x k cells, not an image: an image is resampled and coloured at the output
    # size (thousands of pixels a side)
    edges = np.arange(k + 1) - 0.5
    image = ax.pcolormesh(edges, edges, values, cmap="Blues", norm=norm, antialiased=False)
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_aspect("equal")
    colorbar = fig.colorbar(image, cax=ax.inset_axes((1.03, 0.0, 0.035, 1.0)))
    colorbar.set_label("share of the row" if normalize else "count")
    _label_matrix(ax, names, side, widest)
    # the background row and column are a different kind of count: set them apart
    ax.axhline(k - 1.5, color="0.3", linewidth=1.2)
    ax.axvline(k - 1.5, color="0.3", linewidth=1.2)
    if k <= MAX_ANNOTATED_CLASSES:
        _annotate_counts(ax, counts, image)
    title = title or _confusion_title(counts, iou_threshold, score_threshold)
    ax.set_title(
        f"{title}\nbackground row: false positives; background column: missed gts",
        fontsize=10,
        pad=10,
    )
    return _save_cropped(fig, path)


def _label_matrix(ax: Any, names: list[str], side: float, widest: float) -> None:
    """Class names along both sides of the matrix, as ``plots._label_axes`` places them, but
    as plain text: a matplotlib tick costs milliseconds to make and to draw, times 2 x 81.

    Args:
        names: the ``k`` row and column names; side: the matrix's inches.
        widest: the widest name's inches, to place the axis titles beyond the names.
    """
    k = len(names)
    fontsize = _label_fontsize(k)
    ax.set_xticks([])
    ax.set_yticks([])
    # rotate the column names only when the longest would not fit under its cell
    rotate = max(len(n) for n in names) * 0.6 * fontsize / 72 > 0.9 * side / k
    below = offset_copy(ax.get_xaxis_transform(), fig=ax.figure, y=-4, units="points")
    beside = offset_copy(ax.get_yaxis_transform(), fig=ax.figure, x=-4, units="points")
    for i, name in enumerate(names):
        ax.text(i, 0.0, name, transform=below, fontsize=fontsize, rotation=45 if rotate else 0,
                ha="right" if rotate else "center", va="top", rotation_mode="anchor")  # fmt: skip
        ax.text(0.0, i, name, transform=beside, fontsize=fontsize, ha="right", va="center")
    line = 1.4 * fontsize / 72
    under = widest * 0.71 + line if rotate else line  # a 45-degree name's height
    ax.text(0.5, -(under + 0.15) / side, "predicted class", transform=ax.transAxes,
            ha="center", va="top")  # fmt: skip
    ax.text(-(widest + 0.15) / side, 0.5, "ground-truth class", transform=ax.transAxes,
            ha="right", va="center", rotation=90)  # fmt: skip
    # thin white lines between cells, as _label_axes draws them
    edges = np.arange(k - 1) + 0.5
    width = 0.8 if k <= MAX_ANNOTATED_CLASSES else 0.3
    ax.hlines(edges, -0.5, k - 0.5, colors="white", linewidth=width)
    ax.vlines(edges, -0.5, k - 0.5, colors="white", linewidth=width)


def _widest(names: list[str], fontsize: float) -> float:
    """Inches of the widest name at ``fontsize``, measured without drawing."""
    prop = FontProperties(size=fontsize)
    return max(text_to_path.get_text_width_height_descent(n, prop, ismath=False)[0]
               for n in names) / 72  # fmt: skip


def _save_cropped(fig: Figure, path: str | Path) -> Path:
    """Draw once and write the drawn part, with a 0.15 inch border: what
    ``bbox_inches="tight"`` gives, which costs a second drawing to measure it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = cast(FigureCanvasAgg, fig.canvas)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    drawn = rgba.view(np.uint32)[..., 0] != np.array([255] * 4, np.uint8).view(np.uint32)[0]
    rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    pad = round(0.15 * fig.dpi)
    if len(rows):
        rgba = rgba[
            max(rows[0] - pad, 0) : rows[-1] + pad + 1, max(cols[0] - pad, 0) : cols[-1] + pad + 1
        ]
    image = PIL.Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    image.save(path, format="png", dpi=(fig.dpi, fig.dpi))
    return path


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


def _draw_curves(ax: Any, p: np.ndarray, legend: bool) -> list[Any]:
    """``p [T, R]`` of one class (or a class mean): IoU .50, .75 and the mean over all T.

    Returns the three lines.
    """
    lines = []
    for (label, curve), (_, _, color, width) in zip(_curve_values(p), _CURVES):
        lines += ax.plot(RECALL, curve, color=color, linewidth=width, label=label)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
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


def _no_ground_truth(ax: Any) -> None:
    ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=11, color="0.4",
            transform=ax.transAxes)  # fmt: skip
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)


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


def _save(fig: Figure, path: str | Path, dpi: float = DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path
