"""Prediction with a trained checkpoint, and slim checkpoints for it.

``predict`` builds the model, loads the checkpoint and hands the image files to the model's
task entry (``cvkit.engine.tasks``); ``export_weights`` keeps only what prediction needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cvkit import __version__
from cvkit.builder import build
from cvkit.config import Config
from cvkit.config.class_count import fill_from_classes
from cvkit.engine.checkpoint import load_checkpoint, save_checkpoint
from cvkit.engine.deployed import load_deployed
from cvkit.engine.run import build_model, validate
from cvkit.engine.tasks import PredictRequest, task_of
from cvkit.engine.weights import inference_weights, load_model_weights


def predict(
    cfg: Config,
    checkpoint: str | os.PathLike,
    images: list[str],
    topk: int | None = None,
    out_dir: str | os.PathLike | None = None,
    score_threshold: float | None = None,
    batch_size: int = 1,
) -> list[dict[str, Any]]:
    """Predict with a checkpoint on image files (a folder stands for the images in it).

    What comes back, and what is written to ``out_dir``, is the task's (``Task.predict_images``):
    top-k classes for a classifier; detections in each file's pixels, a COCO results file and
    drawn images for a detector; class shares, index-mask PNGs and overlays for a segmenter.

    Args:
        topk: classifiers: the classes listed per image (``None``: 5); detectors: only the
            ``topk`` highest-scoring detections of each image are kept, in the records, the
            results file and the drawn images (``None``: all); segmenters: not used.
        score_threshold: detectors: only detections scoring at least this are kept, in the
            records, the results file and the drawn images. ``None``: all the model gives
            (above its own ``score_threshold``), and the drawn images show those scoring at
            least 0.3, as ``draw_detections`` does by default.
        batch_size: images per forward pass at most. Files are decoded in a worker beside
            the model, and only images the network sees at one padded size share a batch,
            so the predictions are those of batch 1.
    """
    images = expand_images(images)
    state = load_checkpoint(checkpoint)
    fill_from_classes(cfg, list(state.get("classes") or []), f"checkpoint {str(checkpoint)!r}")
    settings = validate(cfg)
    model = build_model(settings, cfg, pretrained=False)  # the checkpoint's weights replace them
    load_model_weights(model, inference_weights(state), Path(checkpoint))
    num_classes = int(getattr(model, "num_classes", 0))
    classes = list(state.get("classes") or []) or [str(i) for i in range(num_classes)]
    model.eval()
    request = PredictRequest(
        classes=classes,
        cat_ids=list(state.get("cat_ids") or range(1, len(classes) + 1)),
        pipeline=lambda skip: _val_pipeline(settings, cfg, skip),
        out_dir=Path(out_dir) if out_dir else None,
        topk=topk,
        batch_size=batch_size,
    )
    if score_threshold is not None:
        # one threshold for every output, the pictures included, so they all agree
        request.score_threshold = request.draw_threshold = score_threshold
    return task_of(model).predict_images(model, images, request)


def predict_deployed(
    model_file: str | os.PathLike,
    images: list[str],
    topk: int | None = None,
    out_dir: str | os.PathLike | None = None,
    score_threshold: float | None = None,
    batch_size: int = 1,
) -> list[dict[str, Any]]:
    """``predict`` with an exported model (``.onnx`` through onnxruntime, or ``.pt2``): no
    config and no cvkit model; the class names, category ids and ``data.val`` transforms
    come from the file's metadata. Same arguments, records and files as ``predict`` (a graph
    exported for one image a run gets the images one by one, whatever ``batch_size``)."""
    images = expand_images(images)
    model = load_deployed(model_file)
    transforms = list(model.metadata.get("val_transforms") or [])
    request = PredictRequest(
        classes=model.classes,
        cat_ids=list(model.metadata["cat_ids"]),
        pipeline=lambda skip: _pipeline(transforms, skip, "val_transforms"),
        out_dir=Path(out_dir) if out_dir else None,
        topk=topk,
        batch_size=batch_size,
    )
    if score_threshold is not None:
        request.score_threshold = request.draw_threshold = score_threshold
    return task_of(model).predict_images(model, images, request)  # type: ignore[arg-type]


def export_weights(
    checkpoint: str | os.PathLike, out: str | os.PathLike, config: str | None = None
) -> Path:
    """A checkpoint for prediction: the weights (EMA if kept), class names, the dataset's
    category ids (so results files keep them) and the config only (``config``, a YAML text,
    in place of the checkpoint's own)."""
    state = load_checkpoint(checkpoint)
    slim = {
        "model": inference_weights(state),
        "classes": state.get("classes", []),
        "cat_ids": state.get("cat_ids"),
        "config": config if config is not None else state.get("config"),
        "cvkit_version": __version__,
    }
    return save_checkpoint(slim, out)


def expand_images(paths: list[str]) -> list[str]:
    """The image files named, a folder replaced by its images (sorted, not recursive).

    Raises:
        FileNotFoundError: a folder holds no images.
    """
    from cvkit.data.image_folder import IMAGE_EXTENSIONS

    files: list[str] = []
    for path in map(str, paths):
        if os.path.isdir(path):
            found = sorted(
                str(p)
                for p in Path(path).iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                raise FileNotFoundError(
                    f"folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            files += found
        else:
            files.append(path)  # read_image says what is wrong with a file
    return files


def _val_pipeline(settings, cfg, skip: tuple[str, ...] = ()):
    """The ``data.val`` transforms (resizing) for the image alone, without those in ``skip``."""
    val = settings.data.val or {}
    return _pipeline(val.get("transforms", []), skip, "data.val", cfg.describe)


def _pipeline(transforms: list, skip: tuple[str, ...], where: str, describe=None):
    """``transforms`` (a config's list, at ``where``) built and composed, without the types
    in ``skip``."""
    from cvkit.data.transforms import compose
    from cvkit.registry import TRANSFORMS

    return compose(
        [
            build(t, TRANSFORMS, path=f"{where}.transforms[{i}]", describe=describe)
            for i, t in enumerate(transforms)
            if not (isinstance(t, dict) and t.get("type") in skip)
        ]
    )
