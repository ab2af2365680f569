"""``dataset.png``: a dataset's statistics (``cvkit doctor``) in one figure, each source's
bars side by side: instances (or images, or pixels) per class, and for boxes COCO's small /
medium / large counts and histograms of box sides and aspect ratios."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cvkit.visualize.plots import _save

MAX_CLASSES_SHOWN = 40  # the most frequent; a longer axis cannot be read


def plot_dataset(stats: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Draw ``stats`` (source label -> ``data.doctor.stats`` dict) as one PNG."""
    with_boxes = any("sizes" in s for s in stats.values())
    panels = 4 if with_boxes else 1
    fig = Figure(figsize=(6 * min(panels, 2), 4 * (1 + (panels > 2))))
    axes = [fig.add_subplot(2 if panels > 2 else 1, min(panels, 2), i + 1) for i in range(panels)]
    _per_class(axes[0], stats)
    if with_boxes:
        boxes = {k: s for k, s in stats.items() if "sizes" in s}
        sizes = {k: s["sizes"] for k, s in boxes.items()}
        _bars(axes[1], sizes, "instances by COCO size (area < 32², < 96², larger)")
        _histogram(axes[2], boxes, ("box_width", "box_height"), "box sides (pixels)")
        _histogram(axes[3], boxes, ("aspect_ratio",), "aspect ratio (width / height)")
    fig.tight_layout()
    return _save(fig, path)


def _per_class(ax: Any, stats: Mapping[str, Mapping[str, Any]]) -> None:
    key = next(
        (k for k in ("instances_per_class", "pixels_per_class", "images_per_class")
         if all(k in s for s in stats.values())),
        "images_per_class",
    )  # fmt: skip
    counts = {label: s.get(key, {}) for label, s in stats.items()}
    total: dict[str, int] = {}
    for per in counts.values():
        for name, n in per.items():
            total[name] = total.get(name, 0) + n
    names = sorted(total, key=lambda n: -total[n])[:MAX_CLASSES_SHOWN]
    _bars(ax, {label: {n: per.get(n, 0) for n in names} for label, per in counts.items()},
          key.replace("_", " "))  # fmt: skip
    ax.tick_params(axis="x", labelrotation=90 if len(names) > 6 else 0)


def _bars(ax: Any, groups: Mapping[str, Mapping[str, int]], title: str) -> None:
    labels = list(next(iter(groups.values()), {}))
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(labels))
    for i, (source, values) in enumerate(groups.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [values.get(k, 0) for k in labels], width,
               label=source)  # fmt: skip
    ax.set_xticks(x, labels)
    ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize="small")


def _histogram(ax: Any, stats: Mapping[str, Mapping[str, Any]], keys: tuple, title: str) -> None:
    """Histograms on their bins' edges; the last, open bin drawn as one more step."""
    for source, s in stats.items():
        for key in keys:
            edges, counts = s[key]["edges"], s[key]["counts"]
            ticks = [f"{e:.3g}" if e < 1e8 else "" for e in edges]
            x = np.arange(len(counts))
            name = f"{source} {key.replace('box_', '')}" if len(keys) > 1 else source
            ax.step(x, counts, where="mid", label=name)
            ax.set_xticks(np.arange(len(edges)) - 0.5, ticks)
    ax.set_title(title)
    ax.legend(fontsize="small")
