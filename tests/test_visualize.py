"""Confusion-matrix and training-curve PNGs: written, readable, not blank, no global state."""

from __future__ import annotations

import math
import sys

import cv2
import matplotlib
import numpy as np
import pytest
import torch

from cvkit.visualize.draw import class_color, draw_detections
from cvkit.visualize.plots import plot_confusion_matrix, plot_curves


def _confusion(k: int, seed: int = 0) -> torch.Tensor:
    """Mostly diagonal counts, with some classes much larger than others."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 4, (k, k), generator=g)
    return counts + torch.diag(torch.randint(5, 200, (k,), generator=g))


def _read_png(path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image


@pytest.mark.parametrize("k", [3, 40])
def test_confusion_matrix_png_is_a_real_image(tmp_path, k):
    names = [f"class_{i}" for i in range(k)]
    path = plot_confusion_matrix(_confusion(k), names, tmp_path / "sub" / "cm.png")
    assert path == tmp_path / "sub" / "cm.png"
    image = _read_png(path)
    height, width, _ = image.shape
    assert min(height, width) > 400
    assert image.std() > 0
    if k == 40:  # the figure grows with the class count
        assert min(height, width) > 1500


def test_confusion_matrix_from_numpy_raw_counts(tmp_path):
    counts = _confusion(4).numpy()
    counts[2] = 0  # a class with no samples: its row stays 0 rather than dividing by zero
    path = plot_confusion_matrix(counts, list("abcd"), tmp_path / "cm.png", normalize=False)
    assert _read_png(path).std() > 0


def test_confusion_matrix_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        plot_confusion_matrix(_confusion(3), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="K x K"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "cm.png")


def _records() -> list[dict]:
    """Like metrics.jsonl: a train record every 5 steps, a val record per epoch."""
    records, step = [], 0
    for epoch in range(1, 4):
        for _ in range(20):
            step += 1
            if step % 5 == 0:
                loss = 2.3 * math.exp(-step / 20)
                records.append({"phase": "train", "epoch": epoch, "step": step, "loss": loss})
        top1 = 1 - 0.5 * math.exp(-epoch)
        records.append({"phase": "val", "epoch": epoch, "step": step, "top1": top1})
    return records


def test_plot_curves_writes_one_panel_per_key(tmp_path):
    one = _read_png(plot_curves(_records(), ["loss"], tmp_path / "one.png"))
    two = _read_png(plot_curves(_records(), ["loss", "top1"], tmp_path / "two.png"))
    assert one.std() > 0 and two.std() > 0
    assert two.shape[0] > one.shape[0] * 1.5  # a second subplot below the first


def test_plot_curves_names_unknown_keys(tmp_path):
    with pytest.raises(ValueError) as err:
        plot_curves(_records(), ["los"], tmp_path / "curves.png")
    assert "no numeric values for ['los']" in str(err.value)
    assert "['loss', 'top1']" in str(err.value)


def test_plotting_leaves_matplotlib_global_state_alone(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("matplotlib.use was called")

    # A None entry makes any `import matplotlib.pyplot` fail, even if it was imported before.
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setattr(matplotlib, "use", refuse)
    plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png")
    plot_curves([{"phase": "train", "step": 1, "loss": 1.0}], ["loss"], tmp_path / "c.png")
    assert _read_png(tmp_path / "cm.png").std() > 0


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_the_best_detection_is_drawn_on_top(order):
    # both classes fire on one object: digit_5 (0.58) over digit_3 (0.31), in either order
    names = [f"digit_{i}" for i in range(10)]
    boxes = np.array([[20.0, 40.0, 80.0, 90.0], [20.0, 40.0, 78.0, 88.0]])
    labels, scores = [5, 3], [0.58, 0.31]
    image = np.zeros((100, 100, 3), np.uint8)
    drawn = draw_detections(
        image, boxes[order], [labels[i] for i in order], [scores[i] for i in order], names
    )
    (tw, th), _ = cv2.getTextSize("digit_5 0.58", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    label_area = drawn[40 - th - 4 : 40 + 1, 20 : 20 + tw + 5].reshape(-1, 3)
    best = np.all(label_area == class_color(5), axis=1).sum()
    other = np.all(label_area == class_color(3), axis=1).sum()
    assert best > label_area.shape[0] // 2 and other == 0
    # the best box's outline is on top too: its right edge (x = 80) is digit_5's colour
    assert tuple(drawn[70, 80]) == class_color(5)


def test_detections_below_the_threshold_are_not_drawn():
    image = np.zeros((60, 60, 3), np.uint8)
    drawn = draw_detections(image, np.array([[10.0, 20.0, 50.0, 50.0]]), [1], [0.2], ["a", "b"])
    assert not drawn.any()
