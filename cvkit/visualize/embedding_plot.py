"""``tsne.png`` (``cvkit embed``): 2-D points of a classifier's features coloured by class,
with a legend of the class names beside the map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cvkit.visualize.plots import DPI, _save

MAX_LEGEND_CLASSES = 50  # two columns of 25 fit beside the map


def plot_tsne(
    points: np.ndarray, labels: np.ndarray, classes: Sequence[str], path: str | Path, title: str
) -> Path:
    """A scatter of ``points [N, 2]`` coloured by ``labels [N]``, with a legend of class names
    up to ``MAX_LEGEND_CLASSES`` classes (beyond, colours alone tell them apart).

    Returns:
        ``path`` as a ``Path``; its folder is created.
    """
    k = max(len(classes), int(labels.max()) + 1)
    cmap = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    colours = [cmap(i if k <= 20 else i / max(k - 1, 1)) for i in range(k)]
    fig = Figure(figsize=(8.0, 6.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    size = 14 if len(points) <= 1000 else 6
    for c in range(k):
        mask = labels == c
        if mask.any():
            name = classes[c] if c < len(classes) else str(c)
            x, y = points[mask].T
            ax.scatter(x, y, s=size, color=colours[c], label=name, alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    if k <= MAX_LEGEND_CLASSES:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            markerscale=1.5,
            ncols=1 if k <= 25 else 2,
            title="class",
        )
    return _save(fig, path)
