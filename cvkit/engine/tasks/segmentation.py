"""The segmentation task: image + mask batches, mIoU, index-mask PNGs and overlays."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
from torch import nn

from cvkit.data.collate import collate_segmentation
from cvkit.engine.evaluate import Evaluation
from cvkit.engine.tasks.base import PredictRequest, Task
from cvkit.engine.tasks.file_batches import request_batches
from cvkit.evaluation.reports import segmentation_report
from cvkit.evaluation.segmentation import SegmentationEvaluator
from cvkit.models.tasks.protocol import TaskModel
from cvkit.registry import TASKS
from cvkit.structures import SegPrediction
from cvkit.visualize.draw import draw_segmentation, save_index_mask

# Transforms that only pad: prediction leaves them out, since the model pads by itself and a
# padded image would be resized back to the file's size padding and all.
PADDING_TRANSFORMS = ("PadIfNeeded",)


@TASKS.register("segmentation")
class SegmentationTask(Task):
    """Segmenters: ``SegBatch`` (masks padded with the model's ``ignore_index``),
    ``SegmentationEvaluator``, a class per pixel of each image file."""

    default_metric = "mIoU"

    def collate(self, model: nn.Module) -> Callable[[Sequence[Any]], Any]:
        ignore_index = getattr(model, "ignore_index", None)
        if ignore_index is None:
            return collate_segmentation
        return functools.partial(collate_segmentation, ignore_index=ignore_index)

    def evaluator(self, model: nn.Module, dataset: Any) -> SegmentationEvaluator:
        ignore_index = int(getattr(model, "ignore_index", 255))
        return SegmentationEvaluator(cast(TaskModel, model).num_classes, ignore_index=ignore_index)

    def report(
        self, evaluation: Evaluation, classes: Sequence[str], out_dir: Path
    ) -> tuple[dict[str, Any], str]:
        return segmentation_report(
            evaluation.metrics, evaluation.evaluator, classes, out_dir, evaluation.first
        )

    def predict_deployed(self, model: Any, batch: Any) -> list[SegPrediction]:
        """A class per pixel of each file: every image of the batch cut to its size before
        padding and run alone, the masks coming back at its file's size."""
        out = []
        for i, ((h, w), orig) in enumerate(zip(batch.image_sizes, batch.orig_sizes)):
            result = model(
                images=batch.images[i : i + 1, :, :h, :w].cpu().numpy(),
                out_size=np.array(orig, dtype=np.int64),
            )
            mask = torch.from_numpy(result["mask"][0].astype(np.int64))
            out.append(SegPrediction(mask, None, batch.names[i]))
        return out

    @torch.no_grad()
    def predict_images(
        self, model: nn.Module, images: Sequence[str], request: PredictRequest
    ) -> list[dict[str, Any]]:
        """A class per pixel of each file, with each class's share of the pixels.

        The ``data.val`` transforms are applied first, padding left out (use only resizing
        there); the prediction comes back at the file's own size. With ``request.out_dir``,
        per image ``<stem>.png``, the class indices as a palette PNG (it reads back as
        indices, and a viewer shows colours), and ``<stem>_overlay.jpg``, the image blended
        with the class colours (a class named ``background`` left transparent) and a legend.
        Two images with one stem get ``<stem>_2``, ...
        """
        pipeline = request.pipeline(PADDING_TRANSFORMS)
        classes, out = request.classes, request.out_dir
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        used = set[str]()
        stems = [_unique_stem(Path(path).stem, used) for path in images]  # in file order
        records: dict[int, dict[str, Any]] = {}
        batches = request_batches(model, images, pipeline, request, keep_orig=out is not None)
        for files in batches:
            items = [
                {"image": f.image, "orig_size": f.orig_size, "name": Path(f.path).stem}
                for f in files
            ]
            predicted = cast(TaskModel, model).predict(collate_segmentation(items))
            for f, pred in zip(files, predicted):
                mask = pred.mask.numpy()
                record = _shares(str(images[f.index]), mask, classes)
                if out is not None and f.orig is not None:
                    record |= _write(f.orig, mask, classes, out, stems[f.index])
                records[f.index] = record
        return [records[i] for i in range(len(images))]


def _shares(path: str, mask: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    return {
        "image": path,
        "size": [int(mask.shape[0]), int(mask.shape[1])],
        "class_shares": {
            classes[k]: round(float(n) / mask.size, 4) for k, n in enumerate(counts) if n
        },
    }


def _write(
    image: np.ndarray, mask: np.ndarray, classes: Sequence[str], out: Path, stem: str
) -> dict[str, str]:
    """The index-mask PNG and the colour overlay of one image; returns their paths."""
    lower = [str(c).lower() for c in classes]
    background = lower.index("background") if "background" in lower else None
    mask_path = save_index_mask(mask, out / f"{stem}.png")
    overlay = draw_segmentation(image, mask, classes, background=background)
    overlay_path = out / f"{stem}_overlay.jpg"
    if not cv2.imwrite(str(overlay_path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write '{overlay_path}'")
    return {"mask": str(mask_path), "overlay": str(overlay_path)}


def _unique_stem(stem: str, used: set[str]) -> str:
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name
