"""The images and input sizes an export is checked on.

Real images, not noise: a detector's scores on noise are all near its prior, and ties
between them would make the check about tie-breaking. The first validation images of the
config's data when they can be read, else scikit-image's photos (installed with cvkit).
"""

from __future__ import annotations

import numpy as np

from cvkit.config import Config
from cvkit.engine.run import build_datasets, validate
from cvkit.errors import ConfigError
from cvkit.models.deploy import DeployGraph

SAMPLES = 2


def sample_images(cfg: Config, graph: DeployGraph) -> list[np.ndarray]:
    """``SAMPLES`` images ``[h, w, C]`` uint8 with the model's channel count."""
    channels = int(graph.preprocessor.mean.shape[1])
    images = _validation_images(cfg) or _photos()
    out = []
    for image in images[:SAMPLES]:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[2] != channels:  # a photo for a model of one channel, or the reverse
            image = np.repeat(image.mean(2, keepdims=True), channels, 2).astype(np.uint8)
        out.append(np.ascontiguousarray(image, dtype=np.uint8))
    return out


def _validation_images(cfg: Config) -> list[np.ndarray]:
    try:
        datasets = build_datasets(validate(cfg), cfg, ("val",))
        val = datasets.get("val")
        return [val[i]["image"] for i in range(min(SAMPLES, len(val)))] if val else []
    except (ConfigError, FileNotFoundError, ValueError, KeyError, TypeError, OSError):
        return []  # no readable data here: the photos will do


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.chelsea()]


def check_sizes(traced: tuple[int, int], low: int, high: int | None) -> list[tuple[int, int]]:
    """Three input sizes other than ``traced``, within ``[low, high]``: shorter, narrower,
    and neither a multiple of the usual strides."""
    h, w = traced
    top = high or max(h, w) * 2

    def fit(v: float) -> int:
        return int(min(max(round(v), low), top))

    wanted = [(fit(0.75 * h), w), (h, fit(0.6 * w)), (fit(0.8 * h) + 3, fit(0.9 * w) + 5)]
    out = []
    for size in wanted:
        size = (min(size[0], top), min(size[1], top))
        if size != traced and size not in out:
            out.append(size)
    return out
